"""Gradient checkpointing of backbone blocks (``with_cp=True``, the mmseg / mmdet convention)."""
import torch
import torch.utils.checkpoint as cp


def maybe_checkpoint(with_cp, fn, *args):
    """``fn(*args)``, recomputed in the backward pass instead of keeping its activations when
    ``with_cp`` and gradients are being recorded. The RNG state (dropout, drop path) is replayed,
    so outputs and gradients equal the plain call's."""
    if with_cp and torch.is_grad_enabled() and any(
            isinstance(a, torch.Tensor) and a.requires_grad for a in args):
        return cp.checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)
