"""One file (or folder) per method: its config dataclass (the `_target_` of its YAML), its
`build(out_dir, ctx, inputs)` and its LightningModule. The pipeline dispatches through the
protocols of afd/core/protocols.py and knows no recipe by name."""
