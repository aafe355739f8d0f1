"""A checkpoint that does not fit the model is an error for testing and inference, and is
reported (and refused when nothing loads) for ``load_from`` in training.

Before, ``tools/test.py CONFIG CKPT`` with another model's checkpoint exited 0 with an mIoU of
random weights (mmengine loads with ``strict=False`` and only logs a warning), and the demos and
inferencers drew with random weights the same way.
"""
import json
import os.path as osp

import numpy as np
import pytest
import torch

from clusterseg.utils.state_dict import PARTIAL_ENV, CheckpointMismatchError
from tests.conftest import REPO, data_options, run_tool
from tests.test_apis.conftest import config_path, fresh_scope  # noqa: F401 (fixture)

CLS = 'configs/pacavit/pacavit-tiny_1xb32-10e_synthetic-imagenet-64px.py'
RESNET_CLS = 'configs/demo/resnet18-w16_1xb32-10e_synthetic-imagenet-64px.py'  # trains in seconds
CLUSTR_CLS = 'configs/clustr/clustr-tiny_1xb32-10e_synthetic-imagenet-64px.py'


def _state_dict(config):
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope

    import clusterseg  # noqa: F401
    cfg = Config.fromfile(osp.join(REPO, config))
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        torch.manual_seed(0)
        return MODELS.build(cfg.model).state_dict()


def _with_3_classes(state):
    """``state`` with its classifier re-shaped (what fine-tuning on 3 classes starts from)."""
    head = [k for k in state if k.startswith('head.')]
    assert head
    for k in head:
        state[k] = torch.zeros((3, ) + tuple(state[k].shape[1:]))
    return state, head


@pytest.fixture(scope='module')
def ckpts(tmp_path_factory):
    """Another model's checkpoint (ClusTR; it shares one bias with the others), and the
    PaCa-ViT / ResNet classifiers' own with a re-shaped head."""
    root = tmp_path_factory.mktemp('fit')
    out = dict(other=str(root / 'clustr-tiny.pth'), partial=str(root / 'pacavit-3-classes.pth'),
               resnet_partial=str(root / 'resnet-3-classes.pth'))
    torch.save({'state_dict': _state_dict(CLUSTR_CLS), 'meta': {}}, out['other'])
    state, _ = _with_3_classes(_state_dict(CLS))
    torch.save({'state_dict': state, 'meta': {}}, out['partial'])
    state, out['head'] = _with_3_classes(_state_dict(RESNET_CLS))
    out['total'] = sum('num_batches_tracked' not in k for k in state)  # BN counters: not weights
    torch.save({'state_dict': state, 'meta': {}}, out['resnet_partial'])
    return out


def test_test_tool_refuses_a_checkpoint_of_another_model(ckpts, synthetic_root, tmp_path):
    args = ['tools/test.py', CLS, ckpts['other'], '--work-dir', str(tmp_path / 'work'),
            '--cfg-options'] + data_options('cls', synthetic_root / 'imagenet')
    proc = run_tool(args, check=False, env={PARTIAL_ENV: ''})
    assert proc.returncode != 0
    err = proc.stderr
    assert 'CheckpointMismatchError' in err and ckpts['other'] in err, err[-3000:]
    for kind in ('missing from the checkpoint: ', 'unexpected (in the checkpoint, not in the '
                 'model): ', 'shape mismatches (not loaded): '):
        assert kind in err
    assert 'backbone.block1.0.attn.kv1.bias' in err  # the first unexpected keys are named
    assert '--allow-partial-load' in err and PARTIAL_ENV in err
    assert not osp.exists(tmp_path / 'work' / 'test_metrics.json')
    # on purpose: evaluated, and the log says how little loaded
    proc = run_tool(args[:3] + ['--allow-partial-load'] + args[3:], env={PARTIAL_ENV: ''})
    assert 'loaded PARTIALLY' in proc.stdout + proc.stderr
    assert 'accuracy/top1' in json.load(open(tmp_path / 'work' / 'test_metrics.json'))


def test_train_load_from_reports_the_fraction_and_refuses_nothing(ckpts, synthetic_root,
                                                                 tmp_path):
    base = ['tools/train.py', RESNET_CLS, '--no-validate', '--cfg-options', 'train_cfg.max_epochs=1',
            'param_scheduler.1.begin=0', 'train_dataloader.batch_size=8'] + data_options('cls', synthetic_root / 'imagenet')
    proc = run_tool(base + [f'load_from={ckpts["other"]}', '--work-dir', str(tmp_path / 'a')],
                    check=False, env={PARTIAL_ENV: ''})
    assert proc.returncode != 0
    assert 'CheckpointMismatchError' in proc.stderr and ckpts['other'] in proc.stderr
    assert 'nothing of the model ResNet' not in proc.stderr  # the model, not the backbone, named
    assert '(almost) nothing of the model ImageClassifier' in proc.stderr, proc.stderr[-3000:]
    assert not osp.exists(tmp_path / 'a' / 'epoch_2.pth')
    # fine-tuning with another head: trains, and the log names the fraction and the head keys
    proc = run_tool(base + [f'load_from={ckpts["resnet_partial"]}', '--work-dir',
                            str(tmp_path / 'b')], env={PARTIAL_ENV: ''})
    log = proc.stdout + proc.stderr
    loaded = ckpts['total'] - len(ckpts['head'])
    assert f'PARTIAL LOAD, {loaded} of the model\'s {ckpts["total"]} tensors loaded' in log, log[-3000:]
    assert f'shape mismatches (not loaded): {len(ckpts["head"])}' in log
    assert ckpts['head'][0] in log


def test_demo_and_inferencers_refuse(ckpts, tmp_path, monkeypatch, fresh_scope):
    from mmpretrain.apis import ImageClassificationInferencer
    from mmseg.apis import MMSegInferencer

    from clusterseg.apis import init_inferencer
    from tests.test_apis.test_image_demo import load_demo
    monkeypatch.delenv(PARTIAL_ENV, raising=False)
    img = str(tmp_path / 'img.png')
    import mmcv
    mmcv.imwrite(np.zeros((64, 64, 3), np.uint8), img)
    out = tmp_path / 'vis.png'
    demo = load_demo('image_demo')
    with pytest.raises(CheckpointMismatchError) as e:
        demo.main([img, config_path('cls'), ckpts['other'], '--out-file', str(out)])
    err = e.value
    assert err.filename == ckpts['other'] and ckpts['other'] in str(err)
    assert err.loaded < err.total and err.missing and err.unexpected and err.mismatched
    assert not out.exists()
    demo.main([img, config_path('cls'), ckpts['other'], '--out-file', str(out),
               '--allow-partial-load'])
    assert out.exists()
    with pytest.raises(CheckpointMismatchError, match='pacavit-3-classes.pth'):
        init_inferencer(config_path('cls'), ckpts['partial'])  # a single head mismatch suffices
    with pytest.raises(CheckpointMismatchError, match='clustr-tiny.pth'):
        ImageClassificationInferencer(config_path('cls'), pretrained=ckpts['other'], device='cpu')
    monkeypatch.setenv(PARTIAL_ENV, '1')  # the opt-in for the stock inferencers
    ImageClassificationInferencer(config_path('cls'), pretrained=ckpts['other'], device='cpu')
    monkeypatch.delenv(PARTIAL_ENV)
    with pytest.raises(CheckpointMismatchError, match='clustr-tiny.pth'):
        MMSegInferencer(config_path('seg'), ckpts['other'], device='cpu')
