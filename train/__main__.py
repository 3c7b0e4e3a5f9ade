"""python -m focalstack.train: the same as focalstack-train."""

from .cli import main

main(prog_name="focalstack-train")
