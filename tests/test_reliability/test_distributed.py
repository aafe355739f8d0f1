"""2-process DDP on CPU (gloo, ``tools/dist_train.sh``) against one process (issue 7, item 6).

Setup that makes the two runs comparable: the cls demo (ResNet-18 w16) with GroupNorm instead of
BatchNorm (BN statistics are per process: a 2 x 4 batch normalises differently from 1 x 8), a
deterministic train pipeline (resize + no flip: augmentation RNG streams differ per rank), and
the same total batch (2 x 4 = 1 x 8). mmengine's DefaultSampler gives rank r the indices
``perm[r::2]``, so every step sees the same 8 images as the single process. DDP averages the
gradients, and ``clusterseg.DistributedLossMeanHook`` logs the loss averaged over the ranks.
The results differ only by float32 summation order (per-rank means then an all-reduce vs one
mean over 8): we require rtol 1e-5 on the logged losses (measured: ~6e-8) and atol 1e-4 on
the final weights.
"""
import os
import re
import os.path as osp
import signal
import subprocess
import sys
import threading
import time

import torch

from tests.conftest import REPO, logged_scalars, run_tool

CONFIG = 'configs/demo/resnet18-w16_1xb32-10e_synthetic-imagenet-64px.py'


def _opts(root, batch):
    return ['--no-validate', '--cfg-options', f'train_dataloader.dataset.data_root={root}',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            f'train_dataloader.batch_size={batch}',
            'train_dataloader.dataset.pipeline.1.type=Resize',
            'train_dataloader.dataset.pipeline.1.scale=32',
            'train_dataloader.dataset.pipeline.2.prob=0.0',
            'model.backbone.norm_cfg.type=GN', 'model.backbone.norm_cfg.num_groups=4',
            'model.backbone.norm_cfg.requires_grad=True',
            'train_cfg.max_epochs=2', 'default_hooks.logger.interval=1',
            'default_hooks.checkpoint.interval=1', 'randomness.seed=3',
            'randomness.deterministic=True']


def _losses(work):
    return {r['step']: r['loss'] for r in logged_scalars(work) if 'loss' in r}


def test_two_process_ddp_matches_one_process(synthetic_root, tmp_path):
    root = synthetic_root / 'imagenet'
    single, dist = str(tmp_path / 'single'), str(tmp_path / 'dist')
    run_tool(['tools/train.py', CONFIG, '--work-dir', single] + _opts(root, 8))
    run_tool(['bash', 'tools/dist_train.sh', CONFIG, '2', '--work-dir', dist] + _opts(root, 4),
             env={'PYTHON': sys.executable, 'PORT': '29623'})
    a, b = _losses(single), _losses(dist)
    assert sorted(a) == sorted(b) == list(range(1, 17))  # 2 epochs x 64 images / total batch 8
    for step in a:
        assert abs(a[step] - b[step]) <= 1e-5 * abs(a[step]), (step, a[step], b[step])
    print('max relative loss difference 1 vs 2 processes:',
          max(abs(a[s] - b[s]) / abs(a[s]) for s in a))
    assert a[1] != a[16]  # it did train
    wa = torch.load(osp.join(single, 'epoch_2.pth'), map_location='cpu', weights_only=False)
    wb = torch.load(osp.join(dist, 'epoch_2.pth'), map_location='cpu', weights_only=False)
    for k, v in wa['state_dict'].items():
        torch.testing.assert_close(wb['state_dict'][k], v, rtol=0, atol=1e-4, msg=k)


def _children(pid):
    out = []
    for d in os.listdir('/proc'):
        if d.isdigit():
            try:
                with open(f'/proc/{d}/stat') as f:
                    if int(f.read().rsplit(')', 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _rank_of(pid):
    try:
        with open(f'/proc/{pid}/environ', 'rb') as f:
            env = dict(kv.split(b'=', 1) for kv in f.read().split(b'\0') if b'=' in kv)
        return int(env.get(b'RANK', b'-1'))
    except OSError:
        return -1


def test_killed_worker_fails_the_job_instead_of_hanging(synthetic_root, tmp_path):
    root = synthetic_root / 'imagenet'
    opts = _opts(root, 2)
    opts[opts.index('train_cfg.max_epochs=2')] = 'train_cfg.max_epochs=50'
    env = dict(os.environ, PYTHON=sys.executable, PORT='29627', PYTHONUNBUFFERED='1',
               OMP_NUM_THREADS='1')
    proc = subprocess.Popen(['bash', 'tools/dist_train.sh', CONFIG, '2', '--work-dir',
                             str(tmp_path / 'work')] + opts, cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, killed = [], None
    watchdog = threading.Timer(300, proc.kill)  # a hang fails the test instead of blocking it
    watchdog.start()
    try:
        deadline = time.time() + 240
        for line in proc.stdout:
            lines.append(line)
            if killed is None and re.search(r'Epoch\(train\)\s*\[1\]\[\s*3/\d+\]', line):
                workers = [c for c in _children(proc.pid) if _rank_of(c) == 1]
                assert workers, 'rank 1 worker not found'
                os.kill(workers[0], signal.SIGKILL)
                killed = workers[0]
            assert time.time() < deadline, 'no progress'
        proc.wait(timeout=120)  # exits: no hang
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = ''.join(lines)
    assert killed is not None, out[-3000:]
    assert proc.returncode not in (0, -signal.SIGKILL), out[-3000:]  # failed, not killed by us
    assert 'ChildFailedError' in out and 'rank' in out, out[-3000:]
    assert f'Signal 9 (SIGKILL) received by PID {killed}' in out, out[-3000:]
