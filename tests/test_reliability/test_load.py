"""Load test (issue 7, item 7): the synthetic sets scaled x20 train one epoch through
``tools/train.py`` with ``num_workers=2``, and memory does not grow across the epoch.

``clusterseg.MemoryMonitorHook`` samples RSS/PSS of the training process and of its two DataLoader
workers after ``WARMUP`` iterations and in the epoch's last iteration; docs/en/reliability.md
states the numbers measured on the development machine. The bound (``MAX_GROWTH_MIB`` per process
group) is below what leaking one float32 input batch per iteration would add over these epochs
(classification 25 x 1.5 MiB, segmentation 45 x 1.5 MiB, detection 75 x ~1.5 MiB).
"""
import json
import os.path as osp

import pytest

from clusterseg.datasets import synthetic
from clusterseg.engine import MemoryMonitorHook
from tests.conftest import REPO, run_tool, small_seg_options

SCALE = 20
WARMUP = 5
MAX_GROWTH_MIB = 24
# task: (config, generator, image size, batch size, --cfg-options). Large batches of small
# images: the data path (decoding, pipelines, workers) handles the whole x20 set in few, cheap
# training steps.
CASES = {
    'cls': ('configs/pacavit/pacavit-tiny_1xb32-10e_synthetic-imagenet-64px.py', 'make_cls', 32,
            128, ['train_dataloader.dataset.pipeline.1.scale=32']),
    'seg': ('configs/pacavit/pacahead_pacavit-tiny_1xb4-300it_synthetic-ade20k-128x128.py',
            'make_seg', 64, 32,
            [o for o in small_seg_options(64) if not o.startswith(('val_', 'test_'))]),
    # Mask R-CNN's RoI heads dominate its step on a CPU (the mask head's four 256-channel 3x3
    # convs per positive RoI): sample 4 RoIs per image instead of 512 (1 positive), 50 proposals,
    # one mask conv. The data path under test is the recipe's.
    'det': ('configs/pacavit/mask-rcnn_pacavit-tiny_fpn_1xb4-12e_synthetic-coco-128x128.py',
            'make_det', 64, 16, ['train_dataloader.dataset.pipeline.2.scale=(107,64)',
                                 'model.train_cfg.rcnn.sampler.num=4',
                                 'model.train_cfg.rpn_proposal.max_per_img=50',
                                 'model.roi_head.mask_head.num_convs=1']),
}


def _default(fn, arg):
    import inspect
    return inspect.signature(getattr(synthetic, fn)).parameters[arg].default


@pytest.fixture(scope='module')
def scaled_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('x20')
    sizes = {}
    for task, (_, fn, size, _, _) in CASES.items():
        n = _default(fn, 'num_train') * SCALE
        getattr(synthetic, fn)(str(root / task), num_train=n, num_val=2, size=size, seed=1,
                               progress=False)
        sizes[task] = n
    return root, sizes


def _write_config(tmp_path, task, root):
    config, _, _, batch, _ = CASES[task]
    hooks = ("[dict(type='clusterseg.NonFiniteLossHook'), "
             f"dict(type='clusterseg.MemoryMonitorHook', interval=5, warmup_iters={WARMUP})]")
    # the learning-rate schedule is irrelevant here, and the recipes' warm-up ends after epoch 1
    text = [f'_base_ = [{osp.join(REPO, config)!r}]', f'custom_hooks = {hooks}',
            'param_scheduler = None']
    loader = (f"train_dataloader = dict(batch_size={batch}, num_workers=2, "
              f"persistent_workers=True, dataset=dict(data_root={str(root / task)!r}))")
    text.append(loader)
    # training only: no validation (the test set keeps the recipe's, it is not used)
    text.append('val_dataloader = None\nval_cfg = None\nval_evaluator = None')
    path = tmp_path / f'load_{task}.py'
    path.write_text('\n'.join(text) + '\n')
    return str(path)


@pytest.mark.parametrize('task', list(CASES))
def test_x20_epoch_without_memory_growth(scaled_root, tmp_path, task):
    root, sizes = scaled_root
    config = _write_config(tmp_path, task, root)
    batch, extra = CASES[task][3:]
    num_images = sizes[task] * (8 if task == 'cls' else 1)  # make_cls: per class, 8 classes
    iters = num_images // batch
    opts = ['default_hooks.checkpoint.interval=100000', 'default_hooks.logger.interval=10'] + extra
    if task == 'seg':  # iteration-based recipe: one epoch = len(dataset) / batch iterations
        opts += [f'train_cfg.max_iters={iters}']
    else:
        opts += ['train_cfg.max_epochs=1']
    work = tmp_path / 'work'
    run_tool(['tools/train.py', config, '--work-dir', str(work), '--cfg-options'] + opts)
    mem = json.loads((work / 'memory.json').read_text())
    start, end = mem['start'], mem['end']
    print(f'{task}: {num_images} images, iterations {start["iter"]} -> {end["iter"]}: '
          f'main RSS {start["main_rss"]:.0f} -> {end["main_rss"]:.0f} MiB, workers RSS '
          f'{start["workers_rss"]:.0f} -> {end["workers_rss"]:.0f} MiB, growth {mem["growth"]}, '
          f'trace {[(t["iter"], t["main_rss"]) for t in mem["trace"]]}')
    assert start['iter'] == WARMUP and end['iter'] >= iters - 1  # a whole epoch was measured
    assert start['num_workers'] == end['num_workers'] == 2
    assert mem['growth']['main_rss'] < MAX_GROWTH_MIB, mem
    assert mem['growth']['workers_rss'] < MAX_GROWTH_MIB, mem


def test_memory_monitor_sees_growth():
    """The monitor can fail the test above: memory held by the process shows up in its sample."""
    import numpy as np
    before = MemoryMonitorHook.sample()
    held = np.ones(200 * 2 ** 20 // 8)  # 200 MiB, touched
    after = MemoryMonitorHook.sample()
    assert after['main_rss'] - before['main_rss'] > 190, (before, after)
    del held
    with pytest.raises(ValueError, match='interval must be > 0'):
        MemoryMonitorHook(interval=0)


def test_memory_monitor_end_sample(tmp_path):
    """The end sample: the last iteration of the run (iteration-based loops, even shorter than an
    epoch) or of the first epoch (epoch-based loops)."""
    import logging
    from types import SimpleNamespace

    from mmengine.logging import MessageHub
    from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

    def run(loop_cls, max_iters, dataloader_len, iters):
        loop = loop_cls.__new__(loop_cls)
        loop.dataloader = list(range(dataloader_len))
        runner = SimpleNamespace(train_loop=loop, max_iters=max_iters, work_dir=str(tmp_path),
                                 logger=logging.getLogger('test'), iter=0,
                                 message_hub=MessageHub.get_instance('mem_test'))
        hook = MemoryMonitorHook(interval=2, warmup_iters=1)
        for i in range(iters):
            runner.iter = i
            batch_idx = i % dataloader_len if loop_cls is EpochBasedTrainLoop else i
            hook.after_train_iter(runner, batch_idx)
        return hook.samples

    samples = run(IterBasedTrainLoop, max_iters=6, dataloader_len=50, iters=6)
    assert samples['start']['iter'] == 1 and samples['end']['iter'] == 6
    samples = run(EpochBasedTrainLoop, max_iters=30, dataloader_len=10, iters=30)
    assert samples['end']['iter'] == 10  # the first epoch
    assert json.loads((tmp_path / 'memory.json').read_text())['end']['iter'] == 10
