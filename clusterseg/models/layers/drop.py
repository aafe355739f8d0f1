"""Stochastic depth."""
import torch.nn as nn


class DropPath(nn.Module):
    """Drop whole residual branches per sample (stochastic depth), scaling the kept ones.

    Args:
        drop_prob (float): probability of dropping the branch for a sample.
    """

    def __init__(self, drop_prob=0.):
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x):
        if self.drop_prob == 0. or not self.training:
            return x
        keep = 1 - self.drop_prob
        mask = x.new_empty((x.shape[0], ) + (1, ) * (x.ndim - 1)).bernoulli_(keep)  # (B, 1, ...)
        return x * mask / keep

    def extra_repr(self):
        return f'drop_prob={self.drop_prob}'
