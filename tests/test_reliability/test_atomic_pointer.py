"""The ``last_checkpoint`` pointer that ``--resume`` reads is written atomically."""
import os.path as osp

import pytest
import torch.nn as nn
from mmengine.hooks import CheckpointHook, checkpoint_hook
from mmengine.runner.checkpoint import find_latest_checkpoint

from clusterseg.engine import install


@pytest.fixture(autouse=True, scope='module')
def _runtime_safety():
    """These tests drive the patched mmengine functions themselves (no tool or config installs
    them here): install clusterseg's runtime safety as the tools do."""
    install()


def test_pointer_kill_while_writing_keeps_previous(tmp_path):
    pointer = tmp_path / 'last_checkpoint'
    with checkpoint_hook.open(str(pointer), 'w') as f:
        f.write(str(tmp_path / 'iter_10.pth'))
    assert find_latest_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_10.pth')
    with pytest.raises(KeyboardInterrupt):
        with checkpoint_hook.open(str(pointer), 'w') as f:
            f.write(str(tmp_path / 'iter_2'))  # half of 'iter_20.pth'
            raise KeyboardInterrupt('killed while writing the pointer')
    assert find_latest_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_10.pth')
    assert [p.name for p in tmp_path.iterdir()] == ['last_checkpoint']  # no temporary left


def test_checkpoint_hook_still_writes_pointer(tmp_path):
    """Valid runs are unchanged: the hook's pointer names the checkpoint it just saved."""
    from mmengine.runner import Runner
    from torch.utils.data import DataLoader

    import torch
    from mmengine.model import BaseModel

    class Toy(BaseModel):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 1)

        def forward(self, inputs, data_samples=None, mode='loss'):
            return dict(loss=self.lin(inputs).pow(2).mean())

    data = [torch.ones(2)] * 4
    runner = Runner(model=Toy(), work_dir=str(tmp_path),
                    train_dataloader=DataLoader(data, batch_size=2, collate_fn=lambda b: dict(inputs=torch.stack(b))),
                    train_cfg=dict(by_epoch=False, max_iters=2),
                    optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
                    default_hooks=dict(checkpoint=dict(type=CheckpointHook, interval=2,
                                                       by_epoch=False)),
                    default_scope='mmengine')
    runner.train()
    assert open(tmp_path / 'last_checkpoint').read() == osp.join(str(tmp_path), 'iter_2.pth')
