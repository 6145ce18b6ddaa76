"""Hydra launcher plugin `hydra/launcher=afd_slurm` (selected by `+cluster=slurm`)."""
