"""Best-of-N distillation (`divergence=bond_forward`): a policy trained towards the Best-of-n
distribution of a reference policy under the job's reward (recipe.py)."""
