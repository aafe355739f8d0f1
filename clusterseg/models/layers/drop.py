"""Stochastic depth."""
import torch
import torch.nn as nn


class DropPath(nn.Module):
    """Drop whole residual branches per sample (stochastic depth), scaling the kept ones.

    Args:
        drop_prob (float): probability of dropping the branch for a sample.
    """

    def __init__(self, drop_prob=0.):
        super().__init__()
        self.drop_prob = float(drop_prob)

    def _scaled_mask(self, x):
        """(B, 1, ...) of 0 (dropped) or 1 / keep (kept): the scale rides on the small mask, so
        the full-size branch is multiplied once."""
        keep = 1 - self.drop_prob
        return x.new_empty((x.shape[0], ) + (1, ) * (x.ndim - 1)).bernoulli_(keep).div_(keep)

    def forward(self, x):
        if self.drop_prob == 0. or not self.training:
            return x
        return x * self._scaled_mask(x)

    def residual(self, x, branch):
        """``x + self(branch)`` in one pass over the tokens (``addcmul``) when training with
        ``drop_prob > 0``, instead of a multiply and an add; the same mask as ``self(branch)``
        draws from the same random state."""
        if self.drop_prob == 0. or not self.training:
            return x + branch
        return torch.addcmul(x, branch, self._scaled_mask(branch))

    def extra_repr(self):
        return f'drop_prob={self.drop_prob}'
