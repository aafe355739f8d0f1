"""Checkpoint loading: weights_only=True with an allowlist; code-running pickles are refused."""
import os
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader, load_checkpoint

from clusterseg.engine import install
from clusterseg.utils.checkpoint import TRUST_ENV, UnsafeCheckpointError, safe_torch_load


@pytest.fixture(autouse=True, scope='module')
def _runtime_safety():
    """These tests drive the patched mmengine functions themselves (no tool or config installs
    them here): install clusterseg's runtime safety as the tools do."""
    install()


class _RunsCode:
    """Unpickling this object runs a shell command (the attack we refuse)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


class _GetattrAttack:
    """Abuses getattr, the one builtin runner checkpoints need, on an allowlisted class."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import builtins
        return (builtins.getattr, (np.ndarray, 'tofile'))


class _PrivateGetattr(_GetattrAttack):
    """getattr on HistoryBuffer itself, but for a private attribute (a step towards __globals__)."""

    def __reduce__(self):
        import builtins
        return (builtins.getattr, (HistoryBuffer, '__init__'))


def _runner_like_checkpoint():
    buf = HistoryBuffer()
    buf.update(1.5)
    buf.update(0.5)
    return {
        'meta': {'epoch': 2, 'iter': 8, 'seed': np.int64(3), 'lr': np.float64(0.01)},
        'state_dict': nn.Linear(2, 1).state_dict(),
        'message_hub': {'log_scalars': {'train/loss': buf},
                        'runtime_info': {'arr': np.arange(3, dtype=np.float32)}},
    }


def test_runner_checkpoint_contents_load(tmp_path):
    path = str(tmp_path / 'ckpt.pth')
    torch.save(_runner_like_checkpoint(), path)
    # mmengine's own entry point (used by --resume / load_from) and plain torch.load both work
    ckpt = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    buf = ckpt['message_hub']['log_scalars']['train/loss']
    assert isinstance(buf, HistoryBuffer)
    assert buf.mean() == pytest.approx(1.0) and buf.statistics('max') == pytest.approx(1.5)
    np.testing.assert_array_equal(ckpt['message_hub']['runtime_info']['arr'], [0, 1, 2])
    assert ckpt['meta']['seed'] == 3
    assert torch.load(path, weights_only=True)['meta']['iter'] == 8


def _toy_runner(work_dir, max_epochs, resume):
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    class Toy(BaseModel):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 1)

        def forward(self, inputs, labels=None, mode='loss'):
            out = self.lin(inputs).squeeze(-1)
            return dict(loss=((out - labels) ** 2).mean()) if mode == 'loss' else out

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            return dict(inputs=torch.full((2, ), float(i)), labels=torch.tensor(float(i)))

    return Runner(
        model=Toy(), work_dir=str(work_dir), resume=resume,
        train_dataloader=dict(dataset=DS(), sampler=dict(type='DefaultSampler', shuffle=True),
                              batch_size=2, collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.001)),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
        randomness=dict(seed=0), experiment_name=f'toy{max_epochs}_{resume}')


def test_real_runner_checkpoint_resumes(tmp_path):
    _toy_runner(tmp_path, 1, False).train()
    runner = _toy_runner(tmp_path, 2, True)
    runner.train()  # resumes from epoch_1.pth (message hub, numpy RNG state, ...) under weights_only
    assert runner.epoch == 2 and runner.iter == 8


def _code_writing(marker):
    """A Python config whose execution leaves ``marker`` behind."""
    return (f"_ = __import__('pathlib').Path({str(marker)!r}).write_text('ran')\n"
            "gpu_ids = [0]\nmodel = dict(type='NoSuchModel')\n")


@pytest.mark.parametrize('trusted', [False, True])
def test_resume_never_executes_a_config_stored_in_the_checkpoint(tmp_path, monkeypatch, trusted):
    """mmengine's resume executes ``meta['config']`` (legacy key) as Python; we drop it unread."""
    monkeypatch.delenv(TRUST_ENV, raising=False)
    _toy_runner(tmp_path, 1, False).train()
    path = tmp_path / 'epoch_1.pth'
    ckpt = torch.load(path, weights_only=True)
    marker = tmp_path / 'config_ran'
    ckpt['meta']['config'] = _code_writing(marker)
    torch.save(ckpt, path)
    if trusted:
        monkeypatch.setenv(TRUST_ENV, '1')
    runner = _toy_runner(tmp_path, 2, str(path))
    if trusted:  # the opt-in restores mmengine's behaviour: the text runs
        runner.train()
        assert marker.read_text() == 'ran'
        return
    with pytest.warns(UserWarning, match=r"ignored the Python config text in meta\['config'\]"):
        runner.train()
    assert runner.epoch == 2 and not marker.exists()


@pytest.mark.parametrize('trusted', [False, True])
def test_inferencer_never_executes_a_config_stored_in_the_checkpoint(tmp_path, monkeypatch,
                                                                     trusted):
    """Given only weights, mmengine's inferencers execute the checkpoint's config text."""
    from mmseg.apis import MMSegInferencer

    from clusterseg.utils import UnsafeConfigError
    monkeypatch.delenv(TRUST_ENV, raising=False)
    marker = tmp_path / 'config_ran'
    path = str(tmp_path / 'with_cfg.pth')
    torch.save({'state_dict': {}, 'meta': {'cfg': _code_writing(marker)}}, path)
    if trusted:
        monkeypatch.setenv(TRUST_ENV, '1')
        with pytest.raises(Exception):  # the text ran, then the model is unknown
            MMSegInferencer(model=None, weights=path, device='cpu')
        assert marker.read_text() == 'ran'
        return
    with pytest.raises(UnsafeConfigError) as e:
        MMSegInferencer(model=None, weights=path, device='cpu')
    assert path in str(e.value) and 'model=CONFIG_PATH' in str(e.value) and TRUST_ENV in str(e.value)
    assert not marker.exists()


@pytest.mark.parametrize('payload', [_RunsCode, _GetattrAttack, _PrivateGetattr])
def test_code_running_pickle_refused_everywhere(tmp_path, payload, monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)
    marker = tmp_path / 'pwned'
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {}, 'meta': payload(str(marker))}, path)
    model = nn.Linear(2, 1)
    loaders = [
        lambda: CheckpointLoader.load_checkpoint(path, map_location='cpu'),  # --resume, load_from
        lambda: load_checkpoint(model, path, map_location='cpu'),  # init_cfg Pretrained, inferencers
        lambda: safe_torch_load(path),  # converters
    ]
    for load in loaders:
        with pytest.raises(UnsafeCheckpointError) as e:
            load()
        assert path in str(e.value) and TRUST_ENV in str(e.value)
    with pytest.raises(Exception):
        torch.load(path)  # even torch.load (weights_only default) does not run it
    assert not marker.exists()


def test_error_names_the_type(tmp_path, monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)
    path = str(tmp_path / 'evil.pth')
    torch.save({'x': _RunsCode(str(tmp_path / 'm'))}, path)
    with pytest.raises(UnsafeCheckpointError, match=r'(posix|os)\.system'):
        safe_torch_load(path)


def test_trusted_opt_in(tmp_path, monkeypatch):
    path = str(tmp_path / 'custom.pth')
    torch.save({'obj': _Custom(3)}, path)
    monkeypatch.delenv(TRUST_ENV, raising=False)
    with pytest.raises(UnsafeCheckpointError, match='_Custom'):
        safe_torch_load(path)
    monkeypatch.setenv(TRUST_ENV, '1')
    assert safe_torch_load(path)['obj'].v == 3


class _Custom:
    def __init__(self, v):
        self.v = v


def test_missing_file_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        CheckpointLoader.load_checkpoint(osp.join(str(tmp_path), 'nope.pth'))
