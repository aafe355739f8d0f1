"""What clusterseg's backbones share: arch presets, output checks, reference init, checked
pretrained loading, freezing and norm_eval.

PaCa-ViT, ClusTR and PSViT differ in their blocks, not in how they are configured: each has a
class-level ``arch_zoo`` (mmpretrain style) resolved by :meth:`BaseBackbone.resolve_arch`,
``out_indices`` checked by :meth:`BaseBackbone.check_out_indices`, ``frozen_stages`` /
``norm_eval`` applied by :meth:`BaseBackbone.train`, and the same init and ``init_cfg`` loading.
"""
import copy
import re

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_

from clusterseg.utils.state_dict import check_state_dict_fits, load_pretrained_state_dict


class BaseBackbone(BaseModule):
    """Base of clusterseg's backbones (PaCa-ViT, ClusTR, PSViT).

    Subclasses set:

    * ``arch_zoo`` (dict of preset name -> settings), optionally ``arch_aliases`` (other
      name -> preset name), ``_arch_defaults`` (settings every arch gets unless it sets them)
      and ``arch_required`` (keys an explicit arch dict must give);
    * :meth:`validate_arch` to check and normalise the resolved settings;
    * :meth:`frozen_modules` (and :meth:`frozen_parameters` for parameters that belong to no
      sub-module, e.g. a position embedding) for ``frozen_stages``;
    * optionally ``pretrained_ignore_keys`` (regexes of checkpoint keys never loaded) and
      ``pretrained_optional_keys`` (regexes of keys that a checkpoint may hold or lack, e.g. the
      norms of outputs one model uses and another does not).
    """

    arch_zoo = {}
    arch_aliases = {}
    _arch_defaults = {}
    arch_required = ()

    frozen_stages = -1
    norm_eval = False
    pretrained_ignore_keys = ()
    pretrained_optional_keys = ()

    # ------------------------------------------------------------------ configuration
    @classmethod
    def resolve_arch(cls, arch, overrides=None):
        """``arch`` (a preset name, an alias or an explicit dict) -> a fresh settings dict:
        ``_arch_defaults``, updated by the preset / dict, updated by ``overrides`` (every entry
        given is applied), then :meth:`validate_arch`. Presets are never mutated."""
        name = cls.__name__
        if isinstance(arch, str):
            key = cls.arch_aliases.get(arch, arch)
            if key not in cls.arch_zoo:
                valid = sorted(cls.arch_zoo) + sorted(cls.arch_aliases)
                raise KeyError(f'{name}: unknown arch {arch!r}; valid names: {valid}')
            arch = cls.arch_zoo[key]
        elif not isinstance(arch, dict):
            raise TypeError(f'{name} arch must be a str (one of {sorted(cls.arch_zoo)}) or a dict, '
                            f'got {type(arch).__name__}')
        s = copy.deepcopy(dict(cls._arch_defaults))
        s.update(copy.deepcopy(dict(arch)))
        for key, value in (overrides or {}).items():
            s[key] = copy.deepcopy(value)
        for key in cls.arch_required:
            if key not in s:
                raise KeyError(f'{name} arch dict is missing {key!r} (an arch dict needs '
                               f'{list(cls.arch_required)})')
        return cls.validate_arch(s)

    @classmethod
    def validate_arch(cls, settings):
        """Check / normalise resolved arch settings; returns them."""
        return settings

    @classmethod
    def check_per_stage(cls, settings, keys, num_stages, why=''):
        """Every ``settings[key]`` for ``key in keys`` has one entry per stage; ``why`` says
        where ``num_stages`` comes from."""
        for key in keys:
            if len(settings[key]) != num_stages:
                raise ValueError(f'{cls.__name__}: {key} needs one entry per stage ({num_stages} '
                                 f'entries{why}), got {settings[key]}')

    def check_out_indices(self, out_indices, num_levels, allow_negative=False, what='stages'):
        """``out_indices`` (int or sequence) -> list of levels in ``0..num_levels - 1``;
        negative indices count from the end when ``allow_negative``."""
        given = [out_indices] if isinstance(out_indices, int) else list(out_indices)
        out = given
        if allow_negative:
            out = [i % num_levels if isinstance(i, int) and -num_levels <= i < 0 else i for i in given]
        for i in out:
            if not isinstance(i, int) or not 0 <= i < num_levels:
                raise ValueError(f'{type(self).__name__}: out_indices must be in 0..{num_levels - 1} '
                                 f'({what}), got {given}')
        return out

    def set_training_modes(self, frozen_stages, norm_eval, num_stages):
        """Store ``frozen_stages`` (``-1`` nothing, ``0`` the stem only, ``k`` the stem and ``k``
        stages) and ``norm_eval``."""
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= num_stages:
            raise ValueError(f'{type(self).__name__}: frozen_stages must be an int in '
                             f'-1..{num_stages} (-1: nothing, 0: the stem only, {num_stages}: '
                             f'every stage), got {frozen_stages!r}')
        self.frozen_stages, self.norm_eval = frozen_stages, bool(norm_eval)

    # ------------------------------------------------------------------ weights
    def init_extra_weights(self):
        """Init of parameters outside the module types handled by :meth:`init_weights`."""

    def init_weights(self):
        """Reference init (trunc-normal 0.02 linears, fan-out normal convs, unit norms), then
        :meth:`init_extra_weights`, then the pretrained weights of ``init_cfg`` if given, checked
        key by key: any missing, unexpected or mis-shaped key outside ``pretrained_ignore_keys``
        and ``pretrained_optional_keys`` (regexes) is an error."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)):
                # weight[0, 0] is one kernel for Conv (out, in/g, k..) and ConvTranspose (in, out/g, k..)
                fan_out = m.weight[0, 0].numel() * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0, (2.0 / fan_out)**0.5)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.init_extra_weights()
        if self.init_cfg is not None and self.init_cfg.get('type') == 'Pretrained':
            self._load_pretrained(self.init_cfg['checkpoint'], self.init_cfg.get('prefix', None))
        self._is_init = True

    def _load_pretrained(self, checkpoint, prefix=None):
        name = type(self).__name__
        state = load_pretrained_state_dict(checkpoint, prefix=prefix)
        state = {k: v for k, v in state.items() if not k.startswith('head.')}  # classifier head
        ignore = [re.compile(p) for p in self.pretrained_ignore_keys]
        state = {k: v for k, v in state.items() if not any(p.search(k) for p in ignore)}
        own = self.state_dict()
        skipped = [k for k in own if any(p.search(k) for p in ignore)]
        optional = [re.compile(p) for p in self.pretrained_optional_keys]
        unused = [k for k in state if k not in own and any(p.search(k) for p in optional)]
        state = {k: v for k, v in state.items() if k not in unused}
        state = self.adapt_state_dict(state)
        absent = [k for k in own if k not in state and any(p.search(k) for p in optional)]
        check_state_dict_fits(own, state, name=f'{checkpoint} -> {name}',
                              allowed_missing=skipped + absent)
        self.load_state_dict(state, strict=False)
        print_log(f'{name}: loaded {len(state)} tensors from {checkpoint}'
                  + (f'; re-initialised {len(skipped)} ignored keys' if skipped else ''),
                  logger='current')

    def adapt_state_dict(self, state, prefix=''):
        """Fit a checkpoint's tensors to this instance before they are checked and loaded (e.g. a
        position embedding for another grid); ``state`` is modified in place and returned."""
        return state

    # ------------------------------------------------------------------ training modes
    def frozen_modules(self):
        """The modules that ``frozen_stages`` freezes (stem, stages 1..k and what feeds them)."""
        raise NotImplementedError

    def frozen_parameters(self):
        """Parameters outside :meth:`frozen_modules` that ``frozen_stages >= 0`` freezes."""
        return []

    def train(self, mode=True):
        super().train(mode)
        if self.frozen_stages >= 0:
            for m in self.frozen_modules():
                m.eval()
                for p in m.parameters():
                    p.requires_grad = False
            for p in self.frozen_parameters():
                p.requires_grad = False
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self
