"""Reward recipes (`reward=`): how the reward model Best-of-n is scored with is made.

Each recipe names its row sources by role (`sources()`: positives and negatives from
demonstrations or a policy's samples, or preference pairs) and the policies it loads
(`policies()`); the pipeline turns those into upstream artifacts, and the recipe's `build`
reads its rows from them (common.py). Composite rewards (ensemble.py, heterogeneous.py) are
made of other recipes, each its own cached artifact.
"""
