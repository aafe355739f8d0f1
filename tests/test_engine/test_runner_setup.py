"""CPU adaptation of GPU recipes (clusterseg.engine.adapt_to_device)."""
import pytest
import torch
from mmengine.config import Config

from clusterseg.engine import adapt_to_device

AMP_CONFIGS = ['configs/clustr/clustr-tiny_8xb128-300e_in1k.py',
               'configs/kmax_deeplab/kmax-deeplab_r50_32xb2-150k_coco-panoptic-1281x1281.py']


@pytest.mark.skipif(torch.cuda.is_available(), reason='adapts only on CPU-only machines')
@pytest.mark.parametrize('config', AMP_CONFIGS)
def test_amp_recipe_trains_in_fp32_on_cpu(config):
    cfg = Config.fromfile(config)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    before = cfg.optim_wrapper.to_dict()
    said = []
    adapt_to_device(cfg, logger=said.append)
    after = cfg.optim_wrapper.to_dict()
    assert after['type'] == 'OptimWrapper' and 'loss_scale' not in after
    # everything else (optimizer, clipping, paramwise settings) is kept
    for key in set(before) - {'type', 'loss_scale', 'dtype'}:
        assert after[key] == before[key], key
    assert any('AmpOptimWrapper' in s and 'fp32' in s for s in said), said
    # the wrapper now builds on this machine (mmengine's AmpOptimWrapper asserts a GPU)
    from mmengine.optim import build_optim_wrapper
    model = torch.nn.Linear(2, 2)
    cfg.optim_wrapper.pop('paramwise_cfg', None)
    cfg.optim_wrapper.pop('constructor', None)
    assert type(build_optim_wrapper(model, cfg.optim_wrapper)).__name__ == 'OptimWrapper'
