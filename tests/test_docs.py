"""The README and docs/ stay true: every relative link (and #anchor) resolves, every focalstack command in a
shell block parses with the command's own options (names, types, choices: a renamed or removed option
fails here), every benchmark script a block names exists, and the front page stays a front page."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens; underscores stay
    (`gpu_proof.py` gives gpu_proofpy)."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text))


def anchors(page: Path) -> set[str]:
    out, fence = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and line.startswith("#"):
            out.add(slug(line.lstrip("#")))
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_and_anchor_resolves(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+://", target) or target.startswith("mailto:"):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: link to {target} does not resolve"
        if anchor and dest.suffix == ".md":
            assert anchor in anchors(dest), f"{page.name}: {target}: no heading with anchor #{anchor}"


def shell_commands(page: Path):
    """(line, words) of every command in ```sh blocks, continuation lines joined, comments dropped."""
    text, fence, pending = page.read_text(), False, ""
    for line in text.splitlines():
        if line.startswith("```"):
            fence = line.strip() in ("```sh", "```bash") if not fence else False
            continue
        if not fence:
            continue
        line = pending + line
        if line.rstrip().endswith("\\"):
            pending = line.rstrip()[:-1] + " "
            continue
        pending = ""
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        if words:
            yield line.strip(), words


def commands():
    from focalstack.dataset.cli import main as data_main
    from focalstack.render.cli import main as render_main
    from focalstack.train.cli import main as train_main

    mains = {
        "focalstack-render": render_main,
        "focalstack-data": data_main,
        "focalstack-train": train_main,
        "focalstack.render": render_main,
        "focalstack.dataset": data_main,
        "focalstack.train": train_main,
    }
    found = []
    for page in PAGES:
        for line, words in shell_commands(page):
            if "..." in line:
                continue  # an elided example: not a whole command
            if words[0].endswith("torchrun") or words[:2] == ["python", "-m"] or "-m" in words[:6]:
                if "-m" not in words:
                    continue
                k = words.index("-m")
                name, args = words[k + 1], words[k + 2 :]
            else:
                name, args = Path(words[0]).name, words[1:]
            if name in mains:
                found.append(pytest.param(page.name, line, mains[name], name, args, id=f"{page.name}: {line[:60]}"))
    return found


def parse(cmd: click.Command, name: str, args: list[str], parent=None) -> None:
    """Parse ``args`` as ``cmd`` would (options, types, choices), descending into subcommands, without running."""
    ctx = cmd.make_context(name, list(args), parent=parent)
    if isinstance(cmd, click.Group):
        rest = [*ctx._protected_args, *ctx.args] if hasattr(ctx, "_protected_args") else [*ctx.protected_args, *ctx.args]
        if rest:
            sub = cmd.get_command(ctx, rest[0])
            assert sub is not None, f"{name}: no command {rest[0]!r}"
            parse(sub, rest[0], rest[1:], ctx)


@pytest.mark.parametrize("page, line, cmd, name, args", commands())
def test_every_documented_command_parses(page, line, cmd, name, args):
    if "--help" in args or "-h" in args:
        return
    try:
        parse(cmd, name, args)
    except click.exceptions.Exit:
        pass
    except click.UsageError as exc:
        pytest.fail(f"{page}: `{line}`: {exc.format_message()}")


def test_documented_benchmark_scripts_exist():
    for page in PAGES:
        for line, words in shell_commands(page):
            for w in words:
                if w.startswith("benchmarks/") or w.startswith("docs/") and w.endswith(".py"):
                    assert (ROOT / w).exists(), f"{page.name}: `{line}` names {w}, which does not exist"


def test_the_readme_is_a_front_page_and_its_pictures_are_small():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250
    assert lines[lines.index("```sh") + 1].startswith("make demo") and lines[lines.index("```sh") + 2].startswith("make test")
    pictures = sorted((ROOT / "docs" / "img").iterdir())
    assert pictures and sum(p.stat().st_size for p in pictures) < 1_000_000
