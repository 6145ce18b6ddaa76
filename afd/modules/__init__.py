"""LightningModules of the training stages: SFT (forward KL) and the reward model."""
