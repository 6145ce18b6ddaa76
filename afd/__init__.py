"""afd: aligning language models from demonstrations.

Forward-KL SFT, inverse-RL reward models, adversarial imitation and Best-of-N, as a small
graph of cached stages driven by Hydra configs (see README.md, "How the code is laid out").
"""

from afd.core.resolvers import register as _register_resolvers

__version__ = "0.1.0"
_register_resolvers()
