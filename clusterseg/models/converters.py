"""Key-layout conversion of published checkpoints into clusterseg models."""
from collections import OrderedDict

from clusterseg.utils.state_dict import unwrap_state_dict


def pacavit_official_to_clusterseg(checkpoint):
    """Convert an official PaCa-ViT checkpoint (spec pacavit.md §5) to clusterseg's layout.

    - ImageNet (timm) checkpoints: raw ``patch_embed.* / stage{i}.* / head.*`` keys become
      ``backbone.*`` and ``head.fc.*`` (mmpretrain ``ImageClassifier`` + ``LinearClsHead``).
    - mmdet / mmseg checkpoints already use ``backbone.* / neck.* / decode_head.*`` names that
      match clusterseg's modules (backbone and PaCa head); they pass through unchanged.

    Args:
        checkpoint (dict): a loaded checkpoint (raw state dict or wrapped in ``state_dict`` /
            ``model``).

    Returns:
        OrderedDict: the converted state dict.
    """
    state = unwrap_state_dict(checkpoint)
    if any(k.startswith(('backbone.', 'decode_head.', 'neck.', 'roi_head.')) for k in state):
        return OrderedDict(state)
    out = OrderedDict()
    for k, v in state.items():
        if k.startswith('head.'):
            out['head.fc.' + k[len('head.'):]] = v
        else:
            out['backbone.' + k] = v
    return out
