"""clusterseg models: clustering-attention primitives (layers/) and their OpenMMLab compositions."""
from .assigners import *  # noqa: F401,F403
from .backbones import *  # noqa: F401,F403
from .decode_heads import *  # noqa: F401,F403
from .dense_heads import *  # noqa: F401,F403
from .detectors import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
from .pixel_decoders import *  # noqa: F401,F403
