"""MACs and parameters of the PSViT classifier a search candidate describes (our counter,
clusterseg/utils/complexity.py), composed per layer so that the compact set is cheap to count."""
import math

import torch
import torch.nn as nn

from clusterseg.models.backbones.psvit import PSViT, PSViTBlock, _stage_of_layers
from clusterseg.models.layers.token_pool import pooled_hw
from clusterseg.utils.complexity import count_complexity


class CandidateClassifier(nn.Module):
    """The PSViT classifier a candidate describes (what the MACs are counted on)."""

    def __init__(self, arch, img_size, num_classes):
        super().__init__()
        self.backbone = PSViT(arch=arch, img_size=img_size, drop_path_rate=0.)
        self.head = nn.Linear(arch['embed_dims'][-1], num_classes)

    def forward(self, x):
        return self.head(self.backbone(x)[0])


class CandidateCost:
    """``cost(arch) -> (M MACs, M params)`` of the classifier of a candidate ``(pool_after,
    share_attn)`` of ``net``'s search space, at input ``shape`` (H, W), cached.

    MACs are additive over the layers, so each candidate's count is composed from our counter run
    once per (stage, full/shared) block and once on a whole classifier for the rest (patch
    embedding, poolings, norm, head); a test checks it against the counter on the written
    config's model.
    """

    def __init__(self, net, shape, num_classes):
        self.net, self.shape, self.num_classes = net, tuple(shape), num_classes
        self.cache, self._block, self._rest = {}, {}, None
        tokens, hw = [], tuple(math.ceil(v / net.patch_size) for v in self.shape)
        for _ in range(net.space.num_stages):
            tokens.append(1 + hw[0] * hw[1])  # cls + patch tokens of each stage
            hw = pooled_hw(hw, net.pool_kernel, 2, net.pool_dims)
        self.tokens = tokens

    def _layer_macs(self, stage, shared):
        key = (stage, shared)
        if key not in self._block:
            net, n = self.net, self.tokens[stage]
            C, h = net.embed_dims[stage], net.num_heads[stage]
            blk = PSViTBlock(C, h, share=shared, mlp_ratio=net.mlp_ratio)
            x = torch.randn(1, n, C)
            inputs = (x, torch.rand(1, h, n, n)) if shared else (x, )
            self._block[key] = count_complexity(blk, inputs)['macs']
        return self._block[key]

    def __call__(self, arch):
        if arch not in self.cache:
            net = self.net
            stages = _stage_of_layers(net.depth, arch[0])
            body = sum(self._layer_macs(t, bool(s)) for t, s in zip(stages, arch[1]))
            model = CandidateClassifier(net.arch_dict(arch), self.shape, self.num_classes)
            if self._rest is None:
                self._rest = count_complexity(model, (torch.randn(1, 3, *self.shape), ))['macs'] - body
            params = sum(p.numel() for p in model.parameters())
            self.cache[arch] = ((self._rest + body) / 1e6, params / 1e6)
        return self.cache[arch]

    def macs(self, arch):
        """M MACs of ``arch``."""
        return self(arch)[0]
