"""Checkpoint files that are not (complete) checkpoints are reported as what they are, and the
temporary files of interrupted saves are removed at the next start.

Before: a random-bytes file was reported as a code-running pickle (with the advice to opt into
trusting it), an empty file gave a bare ``EOFError``, a truncated one a zip error naming no path,
``--resume`` from a weights-only file ``KeyError: 'epoch'``; and every save killed half-way left
its ``NAME.tmp-PID`` behind for good.
"""
import os
import os.path as osp
import random
import re
import subprocess

import pytest
import torch

from clusterseg.engine.patches import _IN_FLIGHT, remove_orphan_tmp_files
from clusterseg.utils.checkpoint import TRUST_ENV, CheckpointFileError, safe_torch_load
from tests.conftest import data_options, run_tool

CLS = 'configs/demo/resnet18-w16_1xb32-10e_synthetic-imagenet-64px.py'  # trains in seconds


def _write(kind, path):
    if kind == 'random bytes':
        data = bytes(random.Random(0).randrange(256) for _ in range(4096))
    elif kind == 'empty':
        data = b''
    else:  # a checkpoint cut short, as by a kill during a plain (non-atomic) write or copy
        torch.save({'state_dict': {'w': torch.zeros(4096)}}, path)
        with open(path, 'rb') as f:
            data = f.read()[:3000]
    with open(path, 'wb') as f:
        f.write(data)


EXPECTED = {'random bytes': 'is not a PyTorch checkpoint',
            'empty': 'the file is empty (0 bytes)',
            'truncated': 'is truncated or damaged'}


@pytest.mark.parametrize('kind', list(EXPECTED))
def test_test_tool_says_what_is_wrong_with_the_file(kind, synthetic_root, tmp_path):
    path = str(tmp_path / 'model.pth')
    _write(kind, path)
    proc = run_tool(['tools/test.py', CLS, path, '--work-dir', str(tmp_path / 'work'),
                     '--cfg-options'] + data_options('cls', synthetic_root / 'imagenet'),
                    check=False, env={TRUST_ENV: ''})
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]  # the error line a user reads
    assert last.startswith('clusterseg.utils.checkpoint.CheckpointFileError: checkpoint ' + path)
    assert EXPECTED[kind] in last, proc.stderr[-3000:]
    assert 'run code' not in proc.stderr and TRUST_ENV not in last  # not "a code-running pickle"


def test_opt_in_does_not_change_the_diagnosis(tmp_path, monkeypatch):
    monkeypatch.setenv(TRUST_ENV, '1')
    for kind, expected in EXPECTED.items():
        path = str(tmp_path / f'{kind}.pth')
        _write(kind, path)
        with pytest.raises(CheckpointFileError, match=re.escape(expected)) as e:
            safe_torch_load(path)
        assert e.value.filename == path


def test_resume_from_a_weights_only_file_says_so(synthetic_root, tmp_path):
    path = str(tmp_path / 'weights_only.pth')
    torch.save({'state_dict': {'w': torch.zeros(2)}, 'meta': {'dataset_meta': {}}}, path)
    proc = run_tool(['tools/train.py', CLS, '--resume', path, '--work-dir', str(tmp_path / 'work'),
                     '--cfg-options'] + data_options('cls', synthetic_root / 'imagenet'),
                    check=False)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert 'NotResumableCheckpointError' in last and path in last, proc.stderr[-3000:]
    assert "meta['epoch']" in last and f'load_from={path}' in last
    assert "KeyError: 'epoch'" not in proc.stderr


def _dead_pid():
    proc = subprocess.Popen(['true'])
    proc.wait()
    return proc.pid


def test_train_removes_the_leftovers_of_killed_saves(synthetic_root, tmp_path):
    """At the next start: the temporary files of dead processes go; a running process's stay."""
    work = tmp_path / 'work'
    work.mkdir()
    dead = [work / f'epoch_3.pth.tmp-{_dead_pid()}', work / f'last_checkpoint.tmp-{_dead_pid()}']
    live = work / f'epoch_3.pth.tmp-{os.getpid()}'  # this test process: a save in progress
    other = work / 'notes.tmp-abc'
    for p in dead + [live, other]:
        p.write_bytes(b'\0' * 1024)
    run_tool(['tools/train.py', CLS, '--no-validate', '--work-dir', str(work), '--cfg-options',
              'train_cfg.max_epochs=1', 'param_scheduler.1.begin=0', 'train_dataloader.batch_size=8',
              'default_hooks.checkpoint.interval=1'] +
             data_options('cls', synthetic_root / 'imagenet'))
    assert not any(p.exists() for p in dead)
    assert live.exists() and other.exists()
    assert osp.exists(work / 'epoch_1.pth')
    assert sorted(f for f in os.listdir(work) if '.tmp-' in f) == sorted([live.name, other.name])


def test_orphans_of_this_pid_go_unless_in_flight(tmp_path):
    """A restart that got the same PID (as in a container) still removes the old files."""
    old = tmp_path / f'iter_8.pth.tmp-{os.getpid()}'
    writing = tmp_path / f'iter_9.pth.tmp-{os.getpid()}'
    old.write_bytes(b'x')
    writing.write_bytes(b'x')
    _IN_FLIGHT.add(str(writing))
    try:
        assert remove_orphan_tmp_files(str(tmp_path)) == [str(old)]
    finally:
        _IN_FLIGHT.discard(str(writing))
    assert writing.exists() and not old.exists()
