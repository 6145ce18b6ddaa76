"""The pipeline's own stages, around the recipes: the data splits, the pretraining corpus,
samples of a policy, scores of rows, and a policy's metrics on its held-out pool."""
