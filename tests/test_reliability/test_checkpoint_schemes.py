"""Every checkpoint scheme mmengine registers reads through clusterseg's weights_only allowlist.

mmengine's model-zoo loaders (``torchvision://``, ``modelzoo://``, ``open-mmlab://``,
``openmmlab://``, ``mmcls://``) end in ``torch.hub.load_state_dict_from_url``, whose default is
``weights_only=False``: a file planted in the torch hub cache would run code at
``load_from=torchvision://resnet18`` or in an ``init_cfg`` ``Pretrained``. Here a pickle whose
unpickling would create a marker file is planted where each scheme resolves (the hub cache, the
mmengine home, a fake PAVI / petrel backend), downloads are made to fail, and each scheme must
refuse the file (naming it) without creating the marker; a benign file planted the same way loads.
"""
import json
import os
import os.path as osp
import sys
import types
from urllib.parse import urlparse

import pytest
import torch
from mmengine.runner.checkpoint import CheckpointLoader

from clusterseg.engine import install
from clusterseg.utils.checkpoint import TRUST_ENV, UnsafeCheckpointError
from tests.conftest import data_options, run_tool

CLS = 'configs/pacavit/pacavit-tiny_1xb32-10e_synthetic-imagenet-64px.py'

@pytest.fixture(autouse=True, scope='module')
def _runtime_safety():
    """These tests drive the patched mmengine functions themselves (no tool or config installs
    them here): install clusterseg's runtime safety as the tools do."""
    install()


# the prefixes mmengine 0.10.7 registers (mmengine/runner/checkpoint.py, CheckpointLoader._schemes)
MMENGINE_SCHEMES = {'', 'http://', 'https://', 'torchvision://', 'modelzoo://', 'open-mmlab://',
                    'openmmlab://', 'mmcls://', 'pavi://', r'(\S+\:)?s3://', r'(\S+\:)?petrel://'}


class _RunsCode:
    """Unpickling this object runs a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def test_every_registered_scheme_has_a_safe_loader():
    """A scheme added to mmengine fails here until it has a safe loader and a case below."""
    assert set(CheckpointLoader._schemes) == MMENGINE_SCHEMES
    for prefix, loader in CheckpointLoader._schemes.items():
        assert getattr(loader, '_clusterseg_safe', False), f'scheme {prefix!r}: {loader}'


def _hub_cache(url):
    return osp.join(torch.hub.get_dir(), 'checkpoints', osp.basename(urlparse(url).path))


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Hub cache and mmengine home under tmp_path; any download attempt fails the test."""
    monkeypatch.delenv(TRUST_ENV, raising=False)
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.setenv('MMENGINE_HOME', str(tmp_path / 'mmengine'))
    monkeypatch.delenv('XDG_CACHE_HOME', raising=False)

    def no_download(url, *args, **kwargs):
        raise AssertionError(f'a download was attempted: {url}')

    monkeypatch.setattr(torch.hub, 'download_url_to_file', no_download)
    return tmp_path


def _where(scheme, env, monkeypatch):
    """(checkpoint name to load, the file it resolves to) for ``scheme``; fakes the PAVI and
    petrel clients so that they serve that file."""
    from mmengine.runner.checkpoint import (get_external_models, get_mmcls_models,
                                            get_torchvision_models)
    if scheme == 'local':
        return str(env / 'weights.pth'), str(env / 'weights.pth')
    if scheme in ('http://', 'https://'):
        url = f'{scheme}example.invalid/models/weights-0123abcd.pth'
        return url, _hub_cache(url)
    if scheme in ('torchvision://', 'modelzoo://'):
        return f'{scheme}resnet18', _hub_cache(get_torchvision_models()['resnet18'])
    if scheme in ('open-mmlab://', 'openmmlab://'):  # the kMaX-seg R50 recipe's name
        return f'{scheme}resnet50_v1c', _hub_cache(get_external_models()['resnet50_v1c'])
    if scheme == 'open-mmlab:// (local entry)':  # $MMENGINE_HOME/open_mmlab.json -> a local path
        os.makedirs(env / 'mmengine', exist_ok=True)
        with open(env / 'mmengine' / 'open_mmlab.json', 'w') as f:
            json.dump({'my_weights': 'local/my_weights.pth'}, f)
        return 'open-mmlab://my_weights', str(env / 'mmengine' / 'local' / 'my_weights.pth')
    if scheme == 'mmcls://':
        return 'mmcls://resnet50', _hub_cache(get_mmcls_models()['resnet50'])
    served = str(env / 'served.pth')
    if scheme == 'pavi://':
        class Model:
            name = 'weights.pth'

            def download(self, dst):
                with open(served, 'rb') as src, open(dst, 'wb') as out:
                    out.write(src.read())

        modelcloud = types.SimpleNamespace(get=lambda path: Model())
        monkeypatch.setitem(sys.modules, 'pavi', types.SimpleNamespace(modelcloud=modelcloud))
        return 'pavi://project/weights.pth', served
    # s3:// / petrel:// (with an optional NAME: prefix): mmengine's petrel backend, faked
    import mmengine.fileio

    class Backend:
        def get(self, filepath):
            with open(served, 'rb') as f:
                return f.read()

    monkeypatch.setattr(mmengine.fileio, 'get_file_backend', lambda *a, **k: Backend())
    return scheme.replace('NAME:', 'open-mmlab:') + 'bucket/weights.pth', served


SCHEMES = ['local', 'http://', 'https://', 'torchvision://', 'modelzoo://', 'open-mmlab://',
           'openmmlab://', 'open-mmlab:// (local entry)', 'mmcls://', 'pavi://', 's3://',
           'petrel://', 'NAME:s3://']


@pytest.mark.parametrize('scheme', SCHEMES)
def test_scheme_refuses_code_running_pickle(scheme, env, monkeypatch):
    from mmengine.model.weight_init import PretrainedInit
    name, path = _where(scheme, env, monkeypatch)
    os.makedirs(osp.dirname(path), exist_ok=True)
    marker = env / 'pwned'
    torch.save({'state_dict': {}, 'meta': _RunsCode(str(marker))}, path)
    loads = [lambda: CheckpointLoader.load_checkpoint(name, map_location='cpu'),
             lambda: PretrainedInit(checkpoint=name)(torch.nn.Linear(2, 1))]  # init_cfg
    for load in loads:
        with pytest.raises(UnsafeCheckpointError) as e:
            load()
        # remote files are named as the user wrote them; the others by the file read
        named = name if scheme in ('pavi://', 's3://', 'petrel://', 'NAME:s3://') else path
        assert named in str(e.value) and TRUST_ENV in str(e.value)
    assert not marker.exists()


@pytest.mark.parametrize('scheme', SCHEMES)
def test_scheme_loads_plain_weights(scheme, env, monkeypatch):
    name, path = _where(scheme, env, monkeypatch)
    os.makedirs(osp.dirname(path), exist_ok=True)
    w = torch.arange(3.)
    torch.save({'state_dict': {'backbone.w': w}}, path)
    ckpt = CheckpointLoader.load_checkpoint(name, map_location='cpu')
    key = 'w' if scheme == 'mmcls://' else 'backbone.w'  # mmcls:// keeps the backbone's keys
    assert torch.equal(ckpt['state_dict'][key], w)


def test_scheme_registered_later_reads_through_the_allowlist(env, monkeypatch):
    """A loader we did not write that asks torch.load for weights_only=False is still refused."""
    marker = env / 'pwned'
    path = str(env / 'custom.pth')
    torch.save({'meta': _RunsCode(str(marker))}, path)

    def load_from_custom(filename, map_location=None):
        return torch.load(filename[len('custom://'):], map_location=map_location,
                          weights_only=False)

    monkeypatch.setattr(CheckpointLoader, '_schemes', dict(CheckpointLoader._schemes))
    CheckpointLoader.register_scheme('custom://', load_from_custom)
    with pytest.raises(UnsafeCheckpointError, match='custom.pth'):
        CheckpointLoader.load_checkpoint(f'custom://{path}')
    assert not marker.exists()
    monkeypatch.setenv(TRUST_ENV, '1')  # the opt-in applies there too
    torch.save({'meta': 1}, path)
    assert CheckpointLoader.load_checkpoint(f'custom://{path}')['meta'] == 1


def test_train_tool_refuses_planted_torchvision_weights(synthetic_root, tmp_path):
    """``tools/train.py --cfg-options load_from=torchvision://resnet18`` with a code-running file
    in the hub cache (the file is cached, so nothing is downloaded)."""
    from mmengine.runner.checkpoint import get_torchvision_models
    torch_home = tmp_path / 'torch'
    cached = torch_home / 'hub' / 'checkpoints' / osp.basename(
        urlparse(get_torchvision_models()['resnet18']).path)
    os.makedirs(cached.parent)
    marker = tmp_path / 'pwned'
    torch.save({'state_dict': {}, 'meta': _RunsCode(str(marker))}, cached)
    proc = run_tool(['tools/train.py', CLS, '--work-dir', str(tmp_path / 'work'), '--cfg-options',
                     'load_from=torchvision://resnet18'] +
                    data_options('cls', synthetic_root / 'imagenet'),
                    check=False, env={TRUST_ENV: '', 'TORCH_HOME': str(torch_home)})
    assert proc.returncode != 0
    assert 'UnsafeCheckpointError' in proc.stderr and str(cached) in proc.stderr, proc.stderr[-3000:]
    assert not marker.exists()
