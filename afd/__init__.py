"""afd: aligning language models from demonstrations.

Forward-KL SFT, inverse-RL reward models, adversarial imitation and Best-of-N, as a
small graph of cached stages driven by Hydra configs (see afd/pipeline/graph.py).
"""

__version__ = "0.1.0"
