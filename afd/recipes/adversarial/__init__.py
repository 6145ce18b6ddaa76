"""Adversarial imitation (`divergence=reverse_kl|js|f_gan|reverse_kl_occupancy`): the recipe
(recipe.py), its LightningModule (module.py) and its discriminators (discriminators.py)."""
