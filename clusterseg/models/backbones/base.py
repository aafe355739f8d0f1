"""What the pyramid backbones share: reference init, checked pretrained loading, freezing."""
import re

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_

from clusterseg.utils.state_dict import check_state_dict_fits, load_pretrained_state_dict


class PyramidBackbone(BaseModule):
    """Base of the pyramid backbones (PaCa-ViT, ClusTR).

    Subclasses set ``frozen_stages``, ``norm_eval`` and ``pretrained_ignore_keys`` and implement
    :meth:`frozen_modules`.
    """

    frozen_stages = -1
    norm_eval = False
    pretrained_ignore_keys = ()

    def frozen_modules(self):
        """The modules that ``frozen_stages`` freezes (stem, stages 1..k and what feeds them)."""
        raise NotImplementedError

    def init_weights(self):
        """Reference init (trunc-normal linears, fan-out normal convs), then the pretrained
        weights of ``init_cfg`` if given, checked key by key: any missing, unexpected or
        mis-shaped key outside ``pretrained_ignore_keys`` (regexes) is an error."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0, (2.0 / fan_out)**0.5)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if self.init_cfg is not None and self.init_cfg.get('type') == 'Pretrained':
            self._load_pretrained(self.init_cfg['checkpoint'], self.init_cfg.get('prefix', None))
        self._is_init = True

    def _load_pretrained(self, checkpoint, prefix=None):
        name = type(self).__name__
        state = load_pretrained_state_dict(checkpoint, prefix=prefix)
        state = {k: v for k, v in state.items() if not k.startswith('head.')}  # classifier head
        ignore = [re.compile(p) for p in self.pretrained_ignore_keys]
        state = {k: v for k, v in state.items() if not any(p.search(k) for p in ignore)}
        skipped = [k for k in self.state_dict() if any(p.search(k) for p in ignore)]
        check_state_dict_fits(self.state_dict(), state, name=f'{checkpoint} -> {name}',
                              allowed_missing=skipped)
        self.load_state_dict(state, strict=False)
        print_log(f'{name}: loaded {len(state)} tensors from {checkpoint}'
                  + (f'; re-initialised {len(skipped)} ignored keys' if skipped else ''),
                  logger='current')

    def train(self, mode=True):
        super().train(mode)
        if self.frozen_stages >= 0:
            for m in self.frozen_modules():
                m.eval()
                for p in m.parameters():
                    p.requires_grad = False
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self
