"""Self-Play Fine-Tuning (`divergence=spin`): the policy learns to prefer demonstrations over
its previous iterate's own samples, one cached stage per iteration (recipe.py)."""
