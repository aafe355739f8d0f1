"""Token pooling and attention sharing, the two primitives of PSViT.

Chen et al., "PSViT: Better Vision Transformer via Token Pooling and Attention Sharing",
arXiv 2108.03428. Token pooling removes *spatial* redundancy (fewer tokens in deeper layers);
attention sharing removes *layer* redundancy: a layer reuses the attention map softmax(Q K^T)
of the layer just before it and computes only its own values.

No public code exists; everything beyond "pooling reduces the number of tokens" and "neighbouring
layers share attention maps" is our design (spec psvit.md §1.2, docs/en/psvit.md):
the cls token is never pooled, widening is a Linear after the pooling, the shared map is reused
raw and per head (no learned transform), and a shared layer forwards the map it received so
chains of shared layers are allowed.

Shapes: B batch, N tokens (patch tokens + E extra tokens, E = 1 with a cls token, else 0),
C channels, h heads, d = C / h, (H, W) the patch-token grid.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

POOL_TYPES = ('max', 'avg', 'dwconv')
POOL_DIMS = ('1d', '2d')


def pooled_hw(hw_shape, kernel_size=3, stride=2, pool_dims='2d'):
    """Grid after a pooling of ``kernel_size`` / ``stride`` / padding ``kernel_size // 2``.

    For ``'2d'`` each side becomes ``floor((S + 2p - k) / s) + 1`` (``ceil(S / 2)`` for k=3, s=2).
    For ``'1d'`` there is no grid any more: returns ``(1, N')`` with ``N'`` the pooled length.
    """
    p = kernel_size // 2
    if pool_dims == '2d':
        return tuple((s + 2 * p - kernel_size) // stride + 1 for s in hw_shape)
    n = hw_shape[0] * hw_shape[1]
    return (1, (n + 2 * p - kernel_size) // stride + 1)


class TokenPool(nn.Module):
    """Reduce the number of patch tokens between two transformer layers.

    ``cls, t = x[:, :E], x[:, E:]``; ``t`` is pooled (2-D over the (H, W) grid or 1-D over the
    flat sequence) with kernel ``k``, stride ``s``, padding ``k // 2``; if ``out_dims != in_dims``
    both ``t`` and the cls token are widened by a Linear each (like PiT's separate cls ``fc``);
    the cls token itself is never pooled.

    Args:
        in_dims (int): channels C_in.
        out_dims (int | None): channels C_out (None: C_in).
        pool_type (str): ``'max'``, ``'avg'`` (padding excluded from the mean) or ``'dwconv'``
            (depth-wise strided convolution, learned, with bias).
        pool_dims (str): ``'2d'`` (over the grid) or ``'1d'`` (over the row-major sequence;
            the result has no 2-D layout, so it is for classification only).
        kernel_size (int): pooling window k.
        stride (int): s (2 = one "down-sampling layer").
        num_extra_tokens (int): E, leading tokens passed through un-pooled (1 = cls token).
    """

    def __init__(self, in_dims, out_dims=None, pool_type='max', pool_dims='2d', kernel_size=3,
                 stride=2, num_extra_tokens=1):
        super().__init__()
        if pool_type not in POOL_TYPES:
            raise ValueError(f'pool_type must be one of {POOL_TYPES}, got {pool_type!r}')
        if pool_dims not in POOL_DIMS:
            raise ValueError(f'pool_dims must be one of {POOL_DIMS}, got {pool_dims!r}')
        if num_extra_tokens not in (0, 1):
            raise ValueError(f'num_extra_tokens must be 0 or 1 (cls token), got {num_extra_tokens}')
        self.in_dims, self.out_dims = in_dims, out_dims or in_dims
        self.pool_type, self.pool_dims = pool_type, pool_dims
        self.kernel_size, self.stride = kernel_size, stride
        self.num_extra_tokens = num_extra_tokens
        p = kernel_size // 2
        two_d = pool_dims == '2d'
        if pool_type == 'max':
            self.pool = (nn.MaxPool2d if two_d else nn.MaxPool1d)(kernel_size, stride, p)
        elif pool_type == 'avg':
            self.pool = (nn.AvgPool2d if two_d else nn.AvgPool1d)(
                kernel_size, stride, p, count_include_pad=False)
        else:
            self.pool = (nn.Conv2d if two_d else nn.Conv1d)(
                in_dims, in_dims, kernel_size, stride, p, groups=in_dims)
        if self.out_dims != in_dims:
            self.expand = nn.Linear(in_dims, self.out_dims)
            self.cls_expand = nn.Linear(in_dims, self.out_dims) if num_extra_tokens else None
        else:
            self.expand = self.cls_expand = None

    def forward(self, x, hw_shape):
        """x: (B, E + H*W, C_in) -> ((B, E + N', C_out), hw') with hw' the pooled grid
        (``(1, N')`` for 1-D pooling)."""
        B, N, C = x.shape
        E = self.num_extra_tokens
        H, W = hw_shape
        if N != E + H * W or C != self.in_dims:
            raise ValueError(f'TokenPool expects x of shape (B, {E} + H*W, {self.in_dims}) with '
                             f'(H, W)={tuple(hw_shape)}, got {tuple(x.shape)}')
        cls, t = x[:, :E], x[:, E:]
        t = t.transpose(1, 2)  # (B, C, H*W)
        if self.pool_dims == '2d':
            t = self.pool(t.reshape(B, C, H, W))  # (B, C, H', W')
            hw = tuple(t.shape[-2:])
            t = t.flatten(2)  # (B, C, N')
        else:
            t = self.pool(t)  # (B, C, N')
            hw = (1, t.shape[-1])
        t = t.transpose(1, 2)  # (B, N', C)
        if self.expand is not None:
            t = self.expand(t)
            if E:
                cls = self.cls_expand(cls)
        return torch.cat([cls, t], dim=1), hw

    def extra_repr(self):
        return (f'{self.in_dims}->{self.out_dims}, {self.pool_type}-{self.pool_dims}, '
                f'k={self.kernel_size}, s={self.stride}, extra_tokens={self.num_extra_tokens}')


SHARE_IMPLS = ('map', 'qk', 'auto')
"""How a full layer hands its attention to a sharing layer (``FullAttention(return_attn=...)``,
``PSViT(share_impl=...)``); all three give the same outputs (up to fp32 rounding)."""


class FullAttention(nn.Module):
    """Multi-head self-attention that can hand its attention to the next layer.

    ``out = proj(softmax(q k^T / sqrt(d)) v)`` with timm/DeiT names (``qkv``, ``proj``). What is
    handed on to a :class:`SharedAttention` (``return_attn``):

    * ``'map'`` (or ``True``): the (B, h, N, N) map, materialised here; the sharing layer then
      skips q k^T and the softmax (the MACs the paper saves), but the N x N tensor is written,
      normalised and read twice.
    * ``'qk'``: ``(q, k)``; both layers run the fused ``F.scaled_dot_product_attention`` and the
      sharing layer recomputes the same map inside it (no N x N tensor; only the q / k
      projections of the sharing layer are saved).
    * ``'auto'``: ``'map'`` for a small map in inference, ``'qk'`` otherwise (:meth:`handoff`).
      On our CPU a materialised pair (map + two ``A @ v``) is ~20 % faster than two fused calls
      for maps up to ~1 MiB and 2-3x slower for large ones, where writing the N x N tensor
      costs more than recomputing it (docs/en/psvit.md, "Speed").

    Without a hand-off (``return_attn=False``) the fused kernel runs and nothing is kept.

    Args:
        dims (int): channels C.
        num_heads (int): h; C must be divisible by h.
        qkv_bias (bool): biases of q, k, v.
        attn_drop (float): dropout on the attention weights (the map handed on is pre-dropout).
        proj_drop (float): dropout after ``proj``.
    """

    shares_attention = False
    #: ``'auto'`` materialises the map up to this many elements (B * h * N * N; 2**18 fp32 = 1 MiB)
    auto_map_max_elements = 2**18

    def __init__(self, dims, num_heads, qkv_bias=True, attn_drop=0., proj_drop=0.):
        super().__init__()
        if dims % num_heads != 0:
            raise ValueError(f'dims ({dims}) must be divisible by num_heads ({num_heads})')
        self.dims, self.num_heads = dims, num_heads
        self.scale = (dims // num_heads)**-0.5
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dims, dims * 3, bias=qkv_bias)
        self.proj = nn.Linear(dims, dims)
        self.proj_drop = nn.Dropout(proj_drop)

    def handoff(self, x, return_attn='auto'):
        """What ``return_attn`` hands on for the input ``x`` (B, N, C): ``'map'``, ``'qk'`` or
        False. ``'auto'`` is ``'map'`` only for a small map (``B * h * N * N <=
        auto_map_max_elements``) with no gradient being recorded: in a training step the map
        would also be kept for the backward pass, whose N x N softmax gradient costs as much
        as the fused kernel's recomputation (measured), so ``'qk'`` is as fast and keeps less."""
        if return_attn not in (False, True) + SHARE_IMPLS:
            raise ValueError(f"return_attn must be False, True, 'map', 'qk' or 'auto', "
                             f"got {return_attn!r}")
        if return_attn == 'auto':
            B, N, _ = x.shape
            small = B * self.num_heads * N * N <= self.auto_map_max_elements
            recording = torch.is_grad_enabled() and x.requires_grad
            return 'map' if small and not recording else 'qk'
        return 'map' if return_attn is True else return_attn

    def forward(self, x, attn=None, return_attn=False):
        """x: (B, N, C) -> (out (B, N, C), handed-on attention or None).

        Args:
            attn: ignored (a full layer computes its own map).
            return_attn (bool | str): False; True / ``'map'``: also return the (B, h, N, N) map;
                ``'qk'``: also return ``(q, k)``, each (B, h, N, d), q unscaled; ``'auto'``: one
                of the two by the map's size (:meth:`handoff`).
        """
        B, N, C = x.shape
        h = self.num_heads
        handoff = self.handoff(x, return_attn)
        q, k, v = self.qkv(x).view(B, N, 3, h, C // h).permute(2, 0, 3, 1, 4)  # 3 x (B, h, N, d)
        drop = self.attn_drop if self.training else 0.
        if handoff == 'map':
            attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, h, N, N)
            # at p = 0 no dropout op at all (not even a no-op pass over the N x N map)
            out = (F.dropout(attn, drop, True) if drop else attn) @ v  # (B, h, N, d)
        else:
            attn = (q, k) if handoff == 'qk' else None
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)  # (B, h, N, d)
        out = self.proj_drop(self.proj(out.transpose(1, 2).reshape(B, N, C)))  # (B, N, C)
        return out, attn


class SharedAttention(nn.Module):
    """Attention that reuses the previous layer's map: ``out = proj(A_prev (x W_v))``.

    Holds only ``v`` (C x C) and ``proj``; no q / k projections and no ``q k^T`` product. The map
    is used raw and per head (PSViT design choice [R]) and handed on unchanged, so a following
    shared layer reuses the same map. Given ``(q, k)`` of the previous layer instead of the map
    (``FullAttention(return_attn='qk')``), the same map is recomputed inside the fused kernel.

    Args:
        dims (int): channels C.
        num_heads (int): h; must equal the heads of the layer whose map is reused.
        qkv_bias (bool): bias of v.
        attn_drop (float): dropout on the reused attention weights.
        proj_drop (float): dropout after ``proj``.
    """

    shares_attention = True

    def __init__(self, dims, num_heads, qkv_bias=True, attn_drop=0., proj_drop=0.):
        super().__init__()
        if dims % num_heads != 0:
            raise ValueError(f'dims ({dims}) must be divisible by num_heads ({num_heads})')
        self.dims, self.num_heads = dims, num_heads
        self.attn_drop = attn_drop
        self.v = nn.Linear(dims, dims, bias=qkv_bias)
        self.proj = nn.Linear(dims, dims)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x, attn=None, return_attn=False):
        """x: (B, N, C), attn: the previous layer's (B, h, N, N) map or its ``(q, k)``
        -> (out (B, N, C), attn handed on unchanged, or None)."""
        B, N, C = x.shape
        h = self.num_heads
        if attn is None:
            raise ValueError('SharedAttention needs the previous layer\'s attention map: the layer '
                             'before it must be called with return_attn="map", "qk" or "auto"')
        v = self.v(x).view(B, N, h, C // h).transpose(1, 2)  # (B, h, N, d)
        drop = self.attn_drop if self.training else 0.
        if isinstance(attn, (tuple, list)):
            q, k = attn
            if q.shape != v.shape or k.shape != v.shape:
                raise ValueError(f'shared (q, k) must each have shape {tuple(v.shape)} (B, h, N, d), '
                                 f'got {tuple(q.shape)}, {tuple(k.shape)}')
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)  # (B, h, N, d)
        else:
            if attn.shape != (B, h, N, N):
                raise ValueError(f'shared attention map must have shape {(B, h, N, N)} (B, h, N, N), '
                                 f'got {tuple(attn.shape)}')
            out = (F.dropout(attn, drop, True) if drop else attn) @ v  # (B, h, N, d)
        out = self.proj_drop(self.proj(out.transpose(1, 2).reshape(B, N, C)))  # (B, N, C)
        return out, (attn if return_attn else None)


def check_attention_sharing(share, num_heads, stage_of_layer, pool_after=None):
    """Reject sharing patterns that cannot work; errors name the two layers involved.

    Args:
        share (Sequence[bool]): per layer, reuse the previous layer's attention map.
        num_heads (Sequence[int]): per layer, its number of heads.
        stage_of_layer (Sequence[int]): per layer, its token-resolution index (pooling boundaries
            lie between layers of different stages).
        pool_after (Sequence[int] | None): only used to word the error.

    Raises:
        ValueError: layer 0 shares; or layer l shares layer l-1's map across a pooling boundary
            (different token counts) or with a different number of heads.
    """
    L = len(share)
    if not (len(num_heads) == len(stage_of_layer) == L):
        raise ValueError(f'share ({L}), num_heads ({len(num_heads)}) and stage_of_layer '
                         f'({len(stage_of_layer)}) need one entry per layer')
    if L and share[0]:
        raise ValueError('layer 0 cannot share attention: there is no previous layer')
    for l in range(1, L):
        if not share[l]:
            continue
        if stage_of_layer[l] != stage_of_layer[l - 1]:
            where = f' (pool_after={list(pool_after)})' if pool_after is not None else ''
            raise ValueError(f'layer {l} cannot share the attention map of layer {l - 1}: a token '
                             f'pooling lies between them{where}, so their token counts differ')
        if num_heads[l] != num_heads[l - 1]:
            raise ValueError(f'layer {l} ({num_heads[l]} heads) cannot share the attention map of '
                             f'layer {l - 1} ({num_heads[l - 1]} heads): head counts differ')
