"""Non-finite losses stop training cleanly; checkpoint writes are atomic."""
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmengine.fileio.backends.local_backend import LocalBackend
from mmengine.model import BaseModel
from mmengine.runner import Runner

from clusterseg.engine import NonFiniteLossError, install


@pytest.fixture(autouse=True, scope='module')
def _runtime_safety():
    """These tests drive the patched mmengine functions themselves (no tool or config installs
    them here): install clusterseg's runtime safety as the tools do."""
    install()


class _Toy(BaseModel):
    def __init__(self, bad_iter):
        super().__init__()
        self.lin = nn.Linear(2, 1)
        self.calls = 0
        self.bad_iter = bad_iter

    def forward(self, inputs, labels=None, mode='loss'):
        self.calls += 1
        loss = ((self.lin(inputs).squeeze(-1) - labels) ** 2).mean()
        if self.calls == self.bad_iter:
            loss = loss * float('nan')
        return dict(loss_toy=loss)


class _DS(torch.utils.data.Dataset):
    def __len__(self):
        return 16

    def __getitem__(self, i):
        return dict(inputs=torch.full((2, ), float(i % 4)), labels=torch.tensor(1.0))


def test_nan_loss_stops_with_iteration_and_name(tmp_path):
    runner = Runner(
        model=_Toy(bad_iter=3), work_dir=str(tmp_path),
        train_dataloader=dict(dataset=_DS(), sampler=dict(type='DefaultSampler', shuffle=False),
                              batch_size=2, collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=6),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1, by_epoch=False)),
        custom_hooks=[dict(type='clusterseg.NonFiniteLossHook')])
    with pytest.raises(NonFiniteLossError) as e:
        runner.train()
    msg = str(e.value)
    assert 'iteration 3' in msg and 'loss_toy = nan' in msg and 'iter_2.pth' in msg
    assert osp.exists(tmp_path / 'iter_2.pth') and not osp.exists(tmp_path / 'iter_3.pth')
    state = torch.load(tmp_path / 'iter_2.pth', weights_only=True)['state_dict']
    assert torch.isfinite(state['lin.weight']).all()  # the last good weights are intact


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / 'iter_5.pth'
    backend = LocalBackend()
    backend.put(b'old-complete-file', str(target))

    real_open = open

    class _Dies:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

        def write(self, data):
            self.f.write(data[:3])
            raise KeyboardInterrupt('killed while saving')

    def fake_open(path, mode='r', *a, **k):
        f = real_open(path, mode, *a, **k)
        return _Dies(f) if 'w' in mode and str(path).startswith(str(target)) else f

    monkeypatch.setattr('builtins.open', fake_open)
    with pytest.raises(KeyboardInterrupt):
        backend.put(b'new-content-that-never-completes', str(target))
    monkeypatch.undo()
    assert target.read_bytes() == b'old-complete-file'  # never half-written
    assert [p.name for p in tmp_path.iterdir()] == ['iter_5.pth']  # no temporary left behind


def test_memory_monitor_peak_uses_the_benchmark_definition(tmp_path):
    """``MemoryMonitorHook`` reads memory through clusterseg.utils.benchmark: its end sample's
    ``main_peak_rss`` sees a transient 150 MiB allocation between the start and end samples
    (gone by the end sample, so RSS alone would miss it)."""
    import json
    import logging
    from types import SimpleNamespace

    import numpy as np
    from mmengine.logging import MessageHub
    from mmengine.runner import IterBasedTrainLoop

    from clusterseg.engine import MemoryMonitorHook
    from clusterseg.utils import benchmark
    loop = IterBasedTrainLoop.__new__(IterBasedTrainLoop)
    runner = SimpleNamespace(train_loop=loop, max_iters=3, work_dir=str(tmp_path), iter=0,
                             logger=logging.getLogger('test'),
                             message_hub=MessageHub.get_instance('mem_peak_test'))
    hook = MemoryMonitorHook(interval=10, warmup_iters=1)
    for i in range(3):
        runner.iter = i
        if i == 1:
            tmp = np.ones(150 * 2**20 // 8)  # touched: resident
            del tmp
        hook.after_train_iter(runner, i)
    end = json.loads((tmp_path / 'memory.json').read_text())['end']
    assert 140 < end['main_peak_rss'] < 220, end
    assert abs(end['main_rss'] - benchmark.process_memory_mib()[0]) < 50
