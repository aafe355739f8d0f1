"""Running a prepared config: the machine's set-up, the runner, and the run itself.

* :func:`adapt_to_device`: a GPU recipe on a CPU-only machine (SyncBN, AMP, cudnn benchmark);
* :func:`setup_cpu_distributed` / :func:`teardown_distributed`: ``--launcher pytorch`` over gloo
  without CUDA, and a clean end of a multi-process run;
* :func:`build_runner`: the runner, saving the config without the tools' checking transforms;
* :func:`run`: the one place where ``tools/train.py`` and ``tools/test.py`` install the runtime
  safety (:func:`clusterseg.engine.patches.install`), build the runner, train or test, and
  translate the errors mmengine gives for a bad config (:func:`~.errors.explained_errors`).
"""
import copy
import json
import os
import os.path as osp

import torch
from mmengine.config import Config, ConfigDict

from .errors import explained_errors, strip_input_checks
from .patches import install


def _replace_syncbn(node):
    """SyncBN needs CUDA: turn every ``norm_cfg type='SyncBN'`` into ``BN`` in place."""
    count = 0
    if isinstance(node, dict):
        if node.get('type') in ('SyncBN', 'MMSyncBN'):
            node['type'] = 'BN'
            count += 1
        for v in node.values():
            count += _replace_syncbn(v)
    elif isinstance(node, (list, tuple)):
        for v in node:
            count += _replace_syncbn(v)
    return count


def adapt_to_device(cfg, logger=print):
    """Adapt a GPU recipe to a CPU-only machine: SyncBN -> BN, ``AmpOptimWrapper`` (fp16 mixed
    precision, CUDA only) -> ``OptimWrapper`` (fp32, same optimizer and clipping), no cudnn
    benchmark. Each change is logged. (``--amp`` asked for on the command line stays an error.)"""
    if torch.cuda.is_available():
        return
    n = _replace_syncbn(cfg.model)
    if n:
        logger(f'[clusterseg] no CUDA device: replaced {n} SyncBN layer config(s) with BN')
    wrapper = cfg.get('optim_wrapper', None)
    if isinstance(wrapper, dict) and wrapper.get('type') in ('AmpOptimWrapper',
                                                             'mmengine.AmpOptimWrapper'):
        wrapper['type'] = 'OptimWrapper'
        for key in ('loss_scale', 'dtype', 'use_fsdp'):
            wrapper.pop(key, None)
        logger('[clusterseg] no CUDA device: optim_wrapper.type AmpOptimWrapper (fp16 mixed '
               'precision needs CUDA) replaced with OptimWrapper: this run trains in fp32')
    if cfg.get('env_cfg', None) is not None:
        cfg.env_cfg.cudnn_benchmark = False


DIST_TIMEOUT_ENV = 'CLUSTERSEG_DIST_TIMEOUT'
DEFAULT_DIST_TIMEOUT_S = 600


def add_distributed_loss_mean(cfg):
    """Distributed runs log each loss averaged over the processes (the global batch's loss):
    adds ``clusterseg.DistributedLossMeanHook`` to ``custom_hooks`` unless present."""
    if cfg.get('launcher', 'none') == 'none':
        return
    hooks = list(cfg.get('custom_hooks', None) or [])
    if not any(isinstance(h, dict) and h.get('type') == 'clusterseg.DistributedLossMeanHook'
               for h in hooks):
        cfg.custom_hooks = hooks + [ConfigDict(type='clusterseg.DistributedLossMeanHook')]


def setup_cpu_distributed(cfg):
    """Start a gloo process group for ``--launcher pytorch`` when there is no CUDA device.

    mmengine 0.10.7's ``init_dist`` calls ``torch.cuda.set_device`` unconditionally, which dies
    on a CPU-only machine. ``Runner.setup_env`` skips ``init_dist`` when a process group already
    exists, so we create it here and tell DDP not to pin a device (``device_ids=None``).
    """
    if cfg.launcher == 'none' or torch.cuda.is_available():
        return
    if cfg.launcher != 'pytorch':
        raise RuntimeError(
            f'--launcher {cfg.launcher} without a CUDA device is not supported; use '
            'tools/dist_train.sh (torchrun, --launcher pytorch) for multi-process CPU runs')
    import datetime

    import torch.distributed as dist
    if not dist.is_initialized():
        # a collective that waits longer than this (a peer died where the launcher cannot see
        # it, e.g. on another node) fails with an error instead of hanging forever
        timeout = float(os.environ.get(DIST_TIMEOUT_ENV, DEFAULT_DIST_TIMEOUT_S))
        dist.init_process_group(
            backend='gloo', rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']),
            timeout=datetime.timedelta(seconds=timeout))
    wrapper = cfg.get('model_wrapper_cfg', None) or ConfigDict(type='MMDistributedDataParallel')
    wrapper.setdefault('device_ids', None)
    cfg.model_wrapper_cfg = wrapper


def teardown_distributed():
    """End a finished multi-process run cleanly: a barrier (no rank leaves while a peer still
    talks to it), then ``destroy_process_group``. Without it the process group is torn down by
    the interpreter at exit, where gloo's threads can abort a rank (``terminate called without an
    active exception``, SIGABRT) after a run that itself succeeded. No-op in single-process runs."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def build_runner(cfg):
    """Build the runner of ``cfg`` and save the config it runs without the checking transforms.

    mmengine's runner writes its config into the work dir; with ``clusterseg.LoadImageFromFile``
    and the other checking transforms in the pipelines that file would not run in the stock
    inferencers (they look for ``LoadImageFromFile`` by name). The file (and the copy the local
    visualization backend keeps, and the config text in checkpoints) is therefore the config
    before :func:`~.errors.add_input_checks`: ``tools/train.py`` and
    ``tools/test.py`` put the checks back in when they run it.
    """
    from mmengine.dist import is_main_process
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    from mmengine.visualization import LocalVisBackend
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    saved = copy.deepcopy(cfg if isinstance(cfg, Config) else Config(cfg))
    strip_input_checks(saved)
    runner.cfg = saved
    runner.dump_config()  # rank 0 only
    if is_main_process():  # (not Visualizer.add_config: a wandb backend refuses changed values)
        for backend in getattr(runner.visualizer, '_vis_backends', {}).values():
            if isinstance(backend, LocalVisBackend):
                backend.add_config(saved)
    return runner


def apply_heap_setting(cfg):
    """``env_cfg.keep_freed_memory=True`` (``--keep-freed-memory``): keep freed memory in the
    process (:func:`clusterseg.utils.heap.keep_freed_memory`), the CPU-training speed setting of
    docs/en/benchmarks.md. Prints what was done; a value other than a bool is an error naming the
    key.

    Returns:
        bool: whether the setting is in effect.
    """
    value = (cfg.get('env_cfg') or {}).get('keep_freed_memory', False)
    if not isinstance(value, bool):
        raise TypeError(f'env_cfg.keep_freed_memory must be True or False, got {value!r}')
    if not value:
        return False
    from clusterseg.utils.heap import keep_freed_memory
    ok, message = keep_freed_memory()
    print(f'[clusterseg] {message}')
    return ok


def run(cfg, mode):
    """Train (``mode='train'``) or test (``'test'``) a config of :func:`~.config.prepare_config`.

    Installs clusterseg's runtime safety, starts a CPU process group where needed, builds the
    runner and runs it; an unknown type or module argument in the config is re-raised as an
    error naming it. A test run writes its metrics to ``WORK_DIR/test_metrics.json`` and
    prints them (main process).

    Returns:
        dict | None: the test metrics; None for training.
    """
    if mode not in ('train', 'test'):
        raise ValueError(f"mode must be 'train' or 'test', got {mode!r}")
    install()
    apply_heap_setting(cfg)
    setup_cpu_distributed(cfg)
    with explained_errors():
        runner = build_runner(cfg)  # the config it saves runs in every tool and inferencer
        metrics = runner.train() if mode == 'train' else runner.test()
        teardown_distributed()
    if mode == 'train':
        return None
    from mmengine.dist import is_main_process
    if is_main_process():
        out = osp.join(cfg.work_dir, 'test_metrics.json')
        with open(out, 'w') as f:
            json.dump({k: float(v) if hasattr(v, '__float__') else v for k, v in metrics.items()},
                      f, indent=2)
        print(f'[clusterseg] metrics: {json.dumps(metrics, default=str)}')
        print(f'[clusterseg] metrics written to {out}')
    return metrics
