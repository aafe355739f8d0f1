"""Patch-to-cluster attention (PaCa), the primitive of PaCa-ViT.

Grainger et al., "PaCa-ViT: Learning Patch-to-Cluster Attention in Vision Transformers",
CVPR 2023. Queries are the N patches; keys and values come from M << N soft clusters, each a
convex combination of the patches, so attention costs O(N * M * C) instead of O(N^2 * C).

Shapes: B batch, N = H * W patches, C channels, M clusters, h heads, d = C / h.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .cluster import pool_clusters
from .dwconv import depthwise_conv2d


def _check_clusters(num_clusters):
    if not isinstance(num_clusters, int) or num_clusters < 0:
        raise ValueError(f'num_clusters must be an int >= 0 (0 = plain self-attention), '
                         f'got {num_clusters!r}')


class P2CConv2d(nn.Module):
    """Cluster logits from a small conv net: DW kxk -> GELU -> 1x1 -> GELU -> 1x1 (no bias) to M.

    Args:
        dims (int): channels C.
        num_clusters (int): M.
        kernel_size (int): depth-wise kernel (7 in every released variant).
    """

    def __init__(self, dims, num_clusters, kernel_size=7, **kwargs):
        super().__init__()
        self.clustering = nn.Sequential(
            nn.Conv2d(dims, dims, kernel_size, 1, kernel_size // 2, groups=dims),
            nn.GELU(),
            nn.Conv2d(dims, dims, 1),
            nn.GELU(),
            nn.Conv2d(dims, num_clusters, 1, bias=False),
        )

    def forward(self, x, hw_shape):
        """x: (B, N, C) -> cluster logits (B, M, N), contiguous."""
        B, N, C = x.shape
        dw, act1, pw1, act2, pw2 = self.clustering
        x = x.view(B, *hw_shape, C).permute(0, 3, 1, 2)  # channels-last (B, C, H, W) view, no copy
        x = act1(depthwise_conv2d(x, dw.weight, dw.bias))  # (B, C, H, W), channels-last
        x = x.permute(0, 2, 3, 1).reshape(B, N, C)  # a view
        # a 1x1 conv is a matrix product over the channels: on the (B, N, C) tokens one GEMM each,
        # no NCHW round trip (the conv weights (out, in, 1, 1) viewed as (out, in)); the last one
        # as W @ x^T, so the logits come out (B, M, N) contiguous: the softmax over N and the
        # gradient of pool_clusters' (B, M, N) @ (B, N, C) need no transposing copy
        x = act2(F.linear(x, pw1.weight.flatten(1), pw1.bias))  # (B, N, C)
        # bmm on the transposed view (no copy of x, the (B, M, N) result written in place)
        return torch.bmm(pw2.weight.flatten(1).expand(B, -1, -1), x.transpose(1, 2))  # (B, M, N)


class P2CMlp(nn.Module):
    """Cluster logits from a token-wise MLP: Linear(C, rC) -> GELU -> Linear(rC, M)."""

    def __init__(self, dims, num_clusters, mlp_ratio=4., **kwargs):
        super().__init__()
        hidden = int(dims * mlp_ratio)
        self.clustering = nn.Sequential(
            nn.Linear(dims, hidden), nn.GELU(), nn.Linear(hidden, num_clusters))

    def forward(self, x, hw_shape):
        return self.clustering(x).transpose(1, 2)  # (B, M, N)


class P2CLinear(nn.Module):
    """Cluster logits from one linear layer (not evaluated in the paper)."""

    def __init__(self, dims, num_clusters, **kwargs):
        super().__init__()
        self.clustering = nn.Sequential(nn.Linear(dims, num_clusters, bias=False))

    def forward(self, x, hw_shape):
        return self.clustering(x).transpose(1, 2)  # (B, M, N)


CLUSTERING = {'conv': P2CConv2d, 'mlp': P2CMlp, 'linear': P2CLinear}


class PaCaAttention(nn.Module):
    """Multi-head attention from N patches (queries) to M clusters (keys/values).

    ``z = softmax_N(clustering(x))`` (softmax over the *patches*), ``c = LN(z @ x)``,
    ``out = proj(MHA(q=x Wq, k=c Wk, v=c Wv))``. With ``num_clusters=0`` it is plain MHSA
    (``c = x``). A block that does not compute its own clustering reuses the ``z`` passed in
    (stage-wise clustering).

    Args:
        dims (int): channels C.
        num_heads (int): h; C must be divisible by h.
        num_clusters (int): M; 0 for plain self-attention.
        clustering (str | None): ``'conv'``, ``'mlp'`` or ``'linear'`` to compute z in this
            block; ``None`` to take z from the caller.
        clustering_kernel_size (int): kernel of the conv clustering.
        mlp_ratio (float): hidden ratio of the mlp clustering.
        attn_drop (float): dropout on the attention weights.
        proj_drop (float): dropout after the output projection.
        qkv_bias (bool): biases of q, k, v.
    """

    def __init__(self, dims, num_heads, num_clusters, clustering='conv', clustering_kernel_size=7,
                 mlp_ratio=4., attn_drop=0., proj_drop=0., qkv_bias=True):
        super().__init__()
        _check_clusters(num_clusters)
        if dims % num_heads != 0:
            raise ValueError(f'dims ({dims}) must be divisible by num_heads ({num_heads})')
        self.dims, self.num_heads, self.num_clusters = dims, num_heads, num_clusters
        self.scale = (dims // num_heads)**-0.5
        self.attn_drop = attn_drop
        if num_clusters > 0:
            self.cluster_norm = nn.LayerNorm(dims, eps=1e-6)
            if clustering is not None:
                if clustering not in CLUSTERING:
                    raise ValueError(f'clustering must be one of {sorted(CLUSTERING)} or None, '
                                     f'got {clustering!r}')
                self.clustering = CLUSTERING[clustering](
                    dims, num_clusters, kernel_size=clustering_kernel_size, mlp_ratio=mlp_ratio)
            else:
                self.clustering = None
        else:
            self.clustering = None
        self.q = nn.Linear(dims, dims, bias=qkv_bias)
        self.k = nn.Linear(dims, dims, bias=qkv_bias)
        self.v = nn.Linear(dims, dims, bias=qkv_bias)
        self.proj = nn.Linear(dims, dims)
        self.proj_drop = nn.Dropout(proj_drop)

    @property
    def computes_clusters(self):
        return self.clustering is not None

    def forward(self, x, hw_shape, z=None, return_attn=False):
        """Attend from patches to clusters.

        Args:
            x (Tensor): (B, N, C) layer-normed patch tokens, N = H * W.
            hw_shape (tuple[int, int]): (H, W).
            z (Tensor | None): (B, M, N) assignment from an earlier block (stage-wise reuse);
                required when this block has no clustering module and M > 0.
            return_attn (bool): also return the attention weights (B, h, N, M). Only then are
                they materialised; otherwise the fused kernel runs.

        Returns:
            tuple: ``(out (B, N, C), z (B, M, N) or None[, attn])``.
        """
        B, N, C = x.shape
        if N != hw_shape[0] * hw_shape[1] or C != self.dims:
            raise ValueError(f'PaCaAttention expects x of shape (B, H*W, {self.dims}) with '
                             f'(H, W)={tuple(hw_shape)}, got {tuple(x.shape)}')
        if self.num_clusters > 0:
            if self.clustering is not None:
                z = self.clustering(x, hw_shape).softmax(dim=-1)  # (B, M, N), softmax over patches
            elif z is None:
                raise ValueError('this PaCaAttention has no clustering module: pass the (B, M, N) '
                                 'assignment z of an earlier block')
            if z.shape != (B, self.num_clusters, N):
                raise ValueError(f'z must have shape {(B, self.num_clusters, N)}, got {tuple(z.shape)}')
            c = self.cluster_norm(pool_clusters(z, x))  # (B, M, C), convex combinations of patches
        else:
            c = x
        h, d = self.num_heads, C // self.num_heads
        q = self.q(x).view(B, N, h, d).transpose(1, 2)  # (B, h, N, d)
        k = self.k(c).view(B, -1, h, d).transpose(1, 2)  # (B, h, M, d)
        v = self.v(c).view(B, -1, h, d).transpose(1, 2)  # (B, h, M, d)
        attn = None
        if return_attn:
            attn = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)  # (B, h, N, M)
            out = F.dropout(attn, self.attn_drop, self.training) @ v
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.attn_drop if self.training else 0.)
        out = self.proj_drop(self.proj(out.transpose(1, 2).reshape(B, N, C)))
        return (out, z, attn) if return_attn else (out, z)
