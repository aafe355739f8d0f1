"""clusterseg models: clustering-attention primitives (layers/) and their OpenMMLab compositions."""
from .backbones import *  # noqa: F401,F403
from .decode_heads import *  # noqa: F401,F403
