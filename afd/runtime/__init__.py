"""Processes and hardware: the one Trainer builder, the optimiser, worker processes for
distributed training stages, SLURM ranks, DeepSpeed on CPU, and deliberate faults for tests."""
