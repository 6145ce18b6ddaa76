"""Best-of-N distillation (BOND): a policy trained towards the Best-of-n distribution of a
reference policy under the job's reward. `divergence=bond_forward` is SFT on Best-of-n replies
(recipe.py); `bond_reverse` and `bond_jeffreys` train on-policy (online.py, module.py)."""
