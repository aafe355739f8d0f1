"""Axial attention with relative positional encodings (Axial-DeepLab), as used by kMaX's pixel decoder.

1-D multi-head attention along one spatial axis; query, key and value each get a learned relative
positional embedding, and every logit / output term has its own BatchNorm (spec kmax.md §1.2).
The embedding table spans ``max_span`` positions, so an axis may be at most that long; the paper
fixes the input size so that train and test see the same axis lengths.
"""
import torch
import torch.nn as nn

from .kmax_blocks import ConvBN, kmax_norm


class RelativePositionalEncoding(nn.Module):
    """Embedding of the relative offset ``key - query`` (|j - i| < max_span) -> (Lq, Lk, depth).

    Entry ``[i, j]`` reads table row ``j - i + max_span - 1``: the sign convention of both public
    implementations (deeplab2 ``model/layers/positional_encodings.py``,
    ``_compute_relative_distance_matrix``; bytedance/kmax-deeplab
    ``kmax_deeplab/modeling/pixel_decoder/kmax_pixel_decoder.py``, same function), so converted
    checkpoints apply their position tables unmirrored.
    """

    def __init__(self, depth, max_span=255):
        super().__init__()
        self.max_span = max_span
        self.embeddings = nn.Embedding(2 * max_span - 1, depth)
        nn.init.trunc_normal_(self.embeddings.weight, std=1.0)

    def forward(self, length):
        if length > self.max_span:
            raise ValueError(f'axial length {length} exceeds the relative-position span {self.max_span}')
        pos = torch.arange(length, device=self.embeddings.weight.device)
        index = pos[None, :] - pos[:, None] + self.max_span - 1  # (L_query, L_key): key - query
        return self.embeddings(index)  # (L, L, depth)


class AxialAttention(nn.Module):
    """Multi-head attention along the last axis of a (B, C, L) tensor.

    Args:
        in_channels (int): C.
        key_channels (int): total query/key depth over heads.
        value_channels (int): total value depth over heads (= output channels).
        num_heads (int): heads (8).
        max_span (int): relative-position table span (255).
    """

    def __init__(self, in_channels, key_channels, value_channels, num_heads=8, max_span=255):
        super().__init__()
        assert key_channels % num_heads == 0 and value_channels % num_heads == 0
        self.num_heads = num_heads
        self.key_channels, self.value_channels = key_channels, value_channels
        self.qkv_transform = ConvBN(in_channels, 2 * key_channels + value_channels, 1, ndim=1,
                                    conv_init=in_channels ** -0.5)
        self.query_rpe = RelativePositionalEncoding(key_channels // num_heads, max_span)
        self.key_rpe = RelativePositionalEncoding(key_channels // num_heads, max_span)
        self.value_rpe = RelativePositionalEncoding(value_channels // num_heads, max_span)
        self.batch_norm_similarity = kmax_norm(2, 3 * num_heads)
        self.batch_norm_retrieved_output = kmax_norm(1, 2 * value_channels)

    def forward(self, x):
        B, _, L = x.shape
        h = self.num_heads
        q, k, v = self.qkv_transform(x).split([self.key_channels, self.key_channels, self.value_channels], 1)
        q, k, v = q.reshape(B, h, -1, L), k.reshape(B, h, -1, L), v.reshape(B, h, -1, L)
        content = torch.einsum('bhdi,bhdj->bhij', q, k)  # (B, h, L, L)
        query_pos = torch.einsum('bhdi,ijd->bhij', q, self.query_rpe(L))
        key_pos = torch.einsum('bhdj,ijd->bhij', k, self.key_rpe(L))
        logits = self.batch_norm_similarity(torch.cat([content, query_pos, key_pos], dim=1))  # (B, 3h, L, L)
        logits = logits.reshape(B, 3, h, L, L).sum(1)
        attn = logits.float().softmax(dim=-1).to(v.dtype)
        out_v = torch.einsum('bhij,bhdj->bhdi', attn, v).reshape(B, -1, L)  # (B, Cv, L)
        out_pos = torch.einsum('bhij,ijd->bhdi', attn, self.value_rpe(L)).reshape(B, -1, L)
        out = self.batch_norm_retrieved_output(torch.cat([out_v, out_pos], dim=1))  # (B, 2Cv, L)
        return out.reshape(B, 2, self.value_channels, L).sum(1)


class AxialAttention2D(nn.Module):
    """Height-axis then width-axis attention on a (B, C, H, W) map -> (B, value_channels, H, W)."""

    def __init__(self, in_channels, key_channels, value_channels, num_heads=8, max_span=255):
        super().__init__()
        self.height_axis = AxialAttention(in_channels, key_channels, value_channels, num_heads, max_span)
        self.width_axis = AxialAttention(value_channels, key_channels, value_channels, num_heads, max_span)

    def forward(self, x):
        B, _, H, W = x.shape
        x = x.permute(0, 3, 1, 2).reshape(B * W, -1, H)  # (B*W, C, H)
        x = self.height_axis(x)
        x = x.reshape(B, W, -1, H).permute(0, 3, 2, 1).reshape(B * H, -1, W)  # (B*H, Cv, W)
        x = self.width_axis(x)
        return x.reshape(B, H, -1, W).permute(0, 2, 1, 3)  # (B, Cv, H, W)

