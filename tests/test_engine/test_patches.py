"""``import clusterseg`` changes nothing in torch / mmengine / mm*; ``install()`` does, once.

Each check runs in a fresh interpreter: the test session itself has long been patched by the
tools' and configs' entry points.
"""
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

# every attribute clusterseg's runtime safety replaces, read the same way before and after
_SNAPSHOT = r'''
import json, sys
import torch
import mmengine.runner.checkpoint as ckpt_module
from mmengine.dataset import BaseDataset
from mmengine.fileio.backends.local_backend import LocalBackend
from mmengine.hooks import checkpoint_hook
from mmengine.infer import BaseInferencer
from mmengine.runner import Runner
from mmengine.runner.checkpoint import CheckpointLoader
from mmpretrain.apis.base import BaseInferencer as PretrainInferencer
import mmdet.apis, mmseg.apis  # noqa: F401  (their own imports do not count)


def snapshot():
    objects = {
        'torch.load': torch.load,
        'CheckpointLoader.load_checkpoint': CheckpointLoader.__dict__['load_checkpoint'],
        'mmengine.runner.checkpoint.load_state_dict': ckpt_module.load_state_dict,
        'BaseInferencer.__init__': BaseInferencer.__dict__['__init__'],
        'BaseInferencer._init_model': BaseInferencer.__dict__['_init_model'],
        'mmpretrain BaseInferencer.__init__': PretrainInferencer.__dict__['__init__'],
        'LocalBackend.put': LocalBackend.__dict__['put'],
        'checkpoint_hook.open': vars(checkpoint_hook).get('open'),
        'BaseDataset._serialize_data': BaseDataset.__dict__['_serialize_data'],
    }
    for name in ('train', 'val', 'test', 'load_checkpoint', 'resume'):
        objects[f'Runner.{name}'] = Runner.__dict__[name]
    for prefix, loader in CheckpointLoader._schemes.items():
        objects[f'scheme {prefix}'] = loader
    safe = sorted(map(repr, torch.serialization.get_safe_globals()))
    return objects, safe


def changed(a, b):
    (objs_a, safe_a), (objs_b, safe_b) = a, b
    out = sorted(k for k in objs_a if objs_b.get(k) is not objs_a[k])
    return out + (['torch safe globals'] if safe_a != safe_b else [])


before = snapshot()
'''

_PURE_IMPORT = _SNAPSHOT + r'''
import clusterseg
import clusterseg.apis, clusterseg.datasets, clusterseg.engine, clusterseg.models  # noqa: F401
import clusterseg.utils, clusterseg.visualization  # noqa: F401
from mmengine.registry import init_default_scope
# resolve clusterseg types from each downstream scope, as a config does
for scope, registry, name in [('mmseg', 'MODELS', 'clusterseg.PaCaViT'),
                              ('mmdet', 'MODELS', 'clusterseg.ClusTR'),
                              ('mmpretrain', 'MODELS', 'clusterseg.PaCaViT'),
                              ('mmseg', 'TRANSFORMS', 'clusterseg.LoadImageFromFile'),
                              ('mmseg', 'HOOKS', 'clusterseg.NonFiniteLossHook')]:
    init_default_scope(scope)
    reg = getattr(__import__(f'{scope}.registry', fromlist=[registry]), registry)
    assert reg.get(name) is not None, name
from mmengine.registry import HOOKS
HOOKS.build(dict(type='clusterseg.NonFiniteLossHook'))
after_import = snapshot()
from clusterseg.engine import install, installed
was = installed()
install()
after_install = snapshot()
install()
again = snapshot()
print('RESULT', json.dumps(dict(
    by_import=changed(before, after_import), installed_before=was, installed_after=installed(),
    by_install=changed(after_import, after_install), by_second=changed(after_install, again),
    names=sorted(before[0]))))
'''

_DOOR = _SNAPSHOT + r'''
door = sys.argv[1]
if door == 'config':  # custom_imports of the runtime bases
    from mmengine.config import Config
    Config.fromfile('configs/pacavit/pacavit-tiny_1xb32-10e_synthetic-imagenet-64px.py')
else:  # the hook the runtime bases list, built as Runner.__init__ builds custom hooks
    from mmengine.registry import HOOKS
    HOOKS.build(dict(type='clusterseg.RuntimeSafetyHook'))
from clusterseg.engine import installed
print('RESULT', json.dumps(dict(changed=changed(before, snapshot()), installed=installed(),
                                names=sorted(before[0]))))
'''


def _patched_names(names):
    return sorted(set(names) - {'torch.load'} | {'torch safe globals'})


def _run(code, *args):
    proc = subprocess.run([sys.executable, '-c', code, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith('RESULT ')][-1]
    return json.loads(line[len('RESULT '):])


def test_import_patches_nothing_and_install_patches_everything_once():
    out = _run(_PURE_IMPORT)
    assert out['by_import'] == [], f'importing clusterseg changed {out["by_import"]}'
    assert out['installed_before'] is False and out['installed_after'] is True
    # install() replaces every attribute of the list (each scheme's loader included; torch.load
    # only for the duration of a load by a scheme it did not write) and allowlists the checkpoint
    # types; a second call changes nothing
    assert sorted(out['by_install']) == _patched_names(out['names'])
    assert any(n.startswith('scheme ') for n in out['names'])
    assert out['by_second'] == []


@pytest.mark.parametrize('door', ['config', 'hook'])
def test_runtime_bases_install_it(door):
    """Reading a clusterseg config (custom_imports) or building its RuntimeSafetyHook installs
    the runtime safety in a process that never called install()."""
    out = _run(_DOOR, door)
    assert out['installed'] is True
    assert sorted(out['changed']) == _patched_names(out['names'])
