"""A crafted checkpoint that would execute code is refused on every loading path, end to end
(issue 7, item 5): ``tools/train.py --resume``, ``load_from``, ``init_cfg`` ``Pretrained``,
``tools/test.py``, both converters (``.pth`` and detectron2 ``.pkl``), the stock inferencers and
``clusterseg.apis``; and a config that travels inside a checkpoint is never executed.

The loaders themselves are unit-tested in tests/test_utils/test_checkpoint.py; here each user-facing
entry point is driven the way a user would, and the payload's side effect (a marker file) must
not appear.
"""
import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch

from clusterseg.utils.checkpoint import (TRUST_ENV, UnsafeCheckpointError, UnsafeConfigError,
                                         safe_pickle_load)
from tests.conftest import REPO, data_options, run_tool
from tests.test_apis.conftest import config_path, fresh_scope  # noqa: F401 (fixture)

CLS = 'configs/pacavit/pacavit-tiny_1xb32-10e_synthetic-imagenet-64px.py'


class _RunsCode:
    """Unpickling this object runs a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


@pytest.fixture
def evil(tmp_path, monkeypatch):
    """(checkpoint path, marker path): a runner-style checkpoint whose meta runs ``touch``."""
    monkeypatch.delenv(TRUST_ENV, raising=False)
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': {'x': _RunsCode(str(marker))}}, path)
    return str(path), marker


def _assert_refused_in_output(proc, path, marker):
    assert proc.returncode != 0
    assert 'UnsafeCheckpointError' in proc.stderr and path in proc.stderr, proc.stderr[-3000:]
    assert not marker.exists()


@pytest.mark.parametrize('how', ['resume', 'load_from'])
def test_train_tool_refuses(evil, synthetic_root, tmp_path, how):
    path, marker = evil
    extra = ['--resume', path] if how == 'resume' else ['--cfg-options', f'load_from={path}']
    args = ['tools/train.py', CLS, '--work-dir', str(tmp_path / 'work')] + extra
    if how == 'resume':
        args += ['--cfg-options']
    proc = run_tool(args + data_options('cls', synthetic_root / 'imagenet'), check=False,
                    env={TRUST_ENV: ''})
    _assert_refused_in_output(proc, path, marker)


def test_test_tool_refuses(evil, synthetic_root, tmp_path):
    path, marker = evil
    proc = run_tool(['tools/test.py', CLS, path, '--work-dir', str(tmp_path / 'work'),
                     '--cfg-options'] + data_options('cls', synthetic_root / 'imagenet'),
                    check=False, env={TRUST_ENV: ''})
    _assert_refused_in_output(proc, path, marker)


def test_init_cfg_pretrained_refuses(evil):
    """(In a run the runtime bases install the safe loaders before init_weights; built by hand
    here, the model needs install() as any script does.)"""
    from clusterseg.engine import install
    from clusterseg.models.backbones import PaCaViT
    install()
    path, marker = evil
    net = PaCaViT(arch='tiny', init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(UnsafeCheckpointError, match='evil.pth'):
        net.init_weights()
    assert not marker.exists()


def _load_tool(rel):
    import importlib.util
    spec = importlib.util.spec_from_file_location(os.path.basename(rel)[:-3], f'{REPO}/{rel}')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_converters_refuse(evil, tmp_path):
    path, marker = evil
    pkl = str(tmp_path / 'evil.pkl')
    with open(pkl, 'wb') as f:
        pickle.dump({'model': {'w': np.zeros(2)}, 'x': _RunsCode(str(marker))}, f)
    pacavit = _load_tool('tools/model_converters/pacavit2clusterseg.py')
    kmax = _load_tool('tools/model_converters/kmax_d2_to_clusterseg.py')
    calls = [(pacavit.main, path), (kmax.main, path), (kmax.main, pkl)]
    for main, src in calls:
        with pytest.raises(UnsafeCheckpointError) as e:
            main([src, str(tmp_path / 'out.pth')])
        assert src in str(e.value) and TRUST_ENV in str(e.value)
    assert not marker.exists() and not (tmp_path / 'out.pth').exists()


def test_plain_pickle_of_arrays_loads(tmp_path, monkeypatch):
    """What detectron2 .pkl weights hold (dicts of numpy arrays) passes the allowlist intact."""
    monkeypatch.delenv(TRUST_ENV, raising=False)
    weights = OrderedDict(a=np.arange(6, dtype=np.float32).reshape(2, 3), b=np.int64(7),
                          c=np.array([1, 2], dtype=np.int16))
    path = str(tmp_path / 'w.pkl')
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        with open(path, 'wb') as f:
            pickle.dump({'model': weights, '__author__': 'x', 'matching_heuristics': True}, f,
                        protocol=protocol)
        out = safe_pickle_load(path)
        assert out['__author__'] == 'x' and list(out['model']) == ['a', 'b', 'c']
        for k, v in weights.items():
            assert np.array_equal(out['model'][k], v) and out['model'][k].dtype == v.dtype


@pytest.mark.parametrize('which', ['mmseg', 'mmdet', 'mmpretrain', 'clusterseg.apis'])
def test_inferencers_refuse(evil, which, fresh_scope):
    path, marker = evil
    with pytest.raises(UnsafeCheckpointError, match='evil.pth'):
        if which == 'mmseg':
            from mmseg.apis import MMSegInferencer
            MMSegInferencer(config_path('seg'), path, device='cpu')
        elif which == 'mmdet':
            from mmdet.apis import DetInferencer
            DetInferencer(config_path('det'), path, device='cpu')
        elif which == 'mmpretrain':
            from mmpretrain.apis import ImageClassificationInferencer
            ImageClassificationInferencer(config_path('cls'), pretrained=path, device='cpu')
        else:
            from clusterseg.apis import predict_and_draw
            predict_and_draw(config_path('seg'), path, np.zeros((64, 64, 3), np.uint8))
    assert not marker.exists()


def test_det_inferencer_never_runs_the_checkpoints_config(tmp_path, monkeypatch, fresh_scope):
    """(The mmseg inferencer: tests/test_utils/test_checkpoint.py.) No config is read here, so
    the guard is there only once install() ran (the tools, clusterseg.apis, a clusterseg config)."""
    from mmdet.apis import DetInferencer

    from clusterseg.engine import install
    install()
    monkeypatch.delenv(TRUST_ENV, raising=False)
    marker = tmp_path / 'config_ran'
    path = str(tmp_path / 'with_cfg.pth')
    cfg = f"_ = __import__('pathlib').Path({str(marker)!r}).write_text('ran')\nmodel = dict()\n"
    torch.save({'state_dict': {}, 'meta': {'cfg': cfg}}, path)
    with pytest.raises(UnsafeConfigError, match='with_cfg.pth'):
        DetInferencer(model=None, weights=path, device='cpu')
    assert not marker.exists()


def test_stock_inferencer_in_a_plain_script_refuses(evil, tmp_path):
    """A fresh ``python`` that imports only mmseg and gives a clusterseg config: reading the config
    (the runtime bases' ``custom_imports``) installs the safe loading before the checkpoint is
    read; nothing else in the script does."""
    import subprocess
    import sys
    path, marker = evil
    code = ('from mmseg.apis import MMSegInferencer\n'
            f'MMSegInferencer({config_path("seg")!r}, {path!r}, device="cpu")\n')
    proc = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, **{TRUST_ENV: ''}))
    _assert_refused_in_output(proc, path, marker)
