"""clusterseg.engine.launch: CPU adaptation of GPU recipes; the one error translation."""
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


def test_explained_errors_translate_bad_types_and_keys_and_pass_the_rest():
    """The one error translation of tools/train.py and tools/test.py (engine.launch.run)."""
    from clusterseg.engine import ConfigKeyError, UnknownTypeError, explained_errors
    with pytest.raises(UnknownTypeError, match="exists as 'clusterseg.PaCaViT'") as e:
        with explained_errors():
            raise KeyError('PaCaViT is not in the mmseg::model registry. Please check whether '
                           'the value of `PaCaViT` is correct or it was registered as expected.')
    assert isinstance(e.value.__cause__, KeyError)
    with pytest.raises(ConfigKeyError, match="Did you mean 'num_clusters'") as e:
        with explained_errors():
            raise TypeError("PaCaViT.__init__() got an unexpected keyword argument 'num_clustres'")
    assert isinstance(e.value.__cause__, TypeError)
    for err in (TypeError('unsupported operand'), KeyError('img_path'), ValueError('x')):
        with pytest.raises(type(err)) as e:
            with explained_errors():
                raise err
        assert e.value is err  # unchanged, not wrapped
