"""The trained weights focalstack ships (weights-only checkpoints, ``NAME.pt``, each with its model card
``NAME.md``), found by short name: ``focalstack-train evaluate --checkpoint NAME`` or ``predict -c NAME``
(``focalstack.train.checkpoint.bundled_weights``). Nothing is ever downloaded."""
