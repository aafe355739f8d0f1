"""Runner hooks: runtime safety, a non-finite loss stops training, empty datasets stop the run,
the global batch's loss in distributed runs, memory over an epoch."""
import math
import os
import os.path as osp

from mmengine.hooks import Hook
from mmengine.runner import EpochBasedTrainLoop

from clusterseg.registry import HOOKS

from .errors import EmptyDatasetError, describe_dataset


class NonFiniteLossError(RuntimeError):
    """A training loss became NaN or infinite."""


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Stop training when any logged loss is NaN or infinite.

    Runs right after the iteration (before the checkpoint hook), so the step that produced the
    bad loss is never saved: the last checkpoint on disk is the last good one.

    Args:
        interval (int): check every ``interval`` iterations (1: every iteration).
    """

    priority = 'VERY_HIGH'

    def __init__(self, interval=1):
        self.interval = interval

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if not outputs or not self.every_n_train_iters(runner, self.interval):
            return
        # name the loss term at fault rather than the total ('loss' is their sum)
        names = sorted((n for n in outputs if 'loss' in n), key=lambda n: n == 'loss')
        for name in names:
            value = outputs[name]
            value = float(value.detach()) if hasattr(value, 'detach') else float(value)
            if not math.isfinite(value):
                ckpt = None
                last = os.path.join(runner.work_dir, 'last_checkpoint')
                if os.path.exists(last):
                    with open(last) as f:
                        ckpt = f.read().strip()
                raise NonFiniteLossError(
                    f'non-finite loss at iteration {runner.iter + 1} (epoch {runner.epoch + 1}): '
                    f'{name} = {value}. Training stopped; the last good checkpoint is '
                    f'{ckpt or "none (no checkpoint was saved yet)"}. Lower the learning rate, '
                    'enable gradient clipping (optim_wrapper.clip_grad) or check the data.')


@HOOKS.register_module()
class RuntimeSafetyHook(Hook):
    """Install clusterseg's runtime safety (:func:`clusterseg.engine.patches.install`) when a
    runner is built with this hook.

    The default runtime bases list it in ``custom_hooks``: mmengine builds custom hooks in
    ``Runner.__init__``, before it builds a dataset or loads a checkpoint, so a runner built from a
    clusterseg config by any launcher (``Runner.from_cfg``, mim, a user's script) loads
    checkpoints safely and writes them atomically, also where the config replaced the bases'
    ``custom_imports``. Idempotent; does nothing during the run.
    """

    priority = 'VERY_HIGH'

    def __init__(self):
        from .patches import install
        install()


@HOOKS.register_module()
class DatasetCheckHook(Hook):
    """Stop before the run starts when its train / val / test dataset is empty.

    An empty training set otherwise "finishes" an epoch-based run at once, and makes an
    iteration-based one spin forever re-creating an empty dataloader iterator.
    """

    priority = 'VERY_HIGH'

    def before_run(self, runner):
        from mmengine.runner import BaseLoop
        for name in ('train', 'val', 'test'):
            loop = getattr(runner, f'_{name}_loop', None)
            if not isinstance(loop, BaseLoop):
                continue
            ds = getattr(loop.dataloader, 'dataset', None)
            if ds is not None and len(ds) == 0:
                raise EmptyDatasetError(
                    f'the {name} dataset is empty: {describe_dataset(ds)} found no samples '
                    f'(config key {name}_dataloader.dataset). Check data_root / ann_file / '
                    'data_prefix and that the files exist in the expected layout '
                    '(docs/en/get_started.md, "Datasets").')


@HOOKS.register_module()
class DistributedLossMeanHook(Hook):
    """Log, in distributed training, each loss averaged over all processes.

    mmengine logs rank 0's own losses, i.e. the loss of its share of the global batch. This hook
    runs before ``RuntimeInfoHook`` records the outputs and replaces every tensor in them by its
    mean over the ranks, so the logged loss is that of the whole global batch: the value a
    single process with the same total batch logs. One small all-reduce per iteration;
    nothing is done without an initialised process group of more than one process.
    """

    priority = 'HIGHEST'

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        import torch
        import torch.distributed as dist
        if not outputs or not dist.is_available() or not dist.is_initialized():
            return
        world = dist.get_world_size()
        if world == 1:
            return
        keys = [k for k, v in outputs.items() if torch.is_tensor(v) and v.numel() == 1]
        if not keys:
            return
        stacked = torch.stack([outputs[k].detach().float().reshape(()) for k in keys])
        dist.all_reduce(stacked)
        stacked /= world
        for k, v in zip(keys, stacked):
            outputs[k] = v


@HOOKS.register_module()
class MemoryMonitorHook(Hook):
    """Record the resident memory of the training process and of its DataLoader workers.

    A sample is the RSS and PSS (MiB) of the main process and the sum over its child processes
    (the workers), read by :mod:`clusterseg.utils.benchmark` (the readers every benchmark
    uses). The first sample is taken after ``warmup_iters`` training iterations (the model,
    optimizer state and first batches are allocated by then), the last one after the
    last iteration of the first training epoch (epoch-based loops) or of the run (iteration-based
    loops); every ``interval`` iterations a sample is logged as ``rss_main_mib`` /
    ``rss_workers_mib``. At the end the samples, their growth, and the number of iterations in
    between are written to ``work_dir/out_file`` (JSON) and logged in one line. The end sample
    also holds ``main_peak_rss``: the main process's peak RSS between the two samples minus its
    RSS at the start sample, the benchmarks' one definition of peak memory on CPU (``None``
    where the peak cannot be read).

    Linux only (reads ``/proc``); elsewhere it logs a warning once and does nothing.

    Args:
        interval (int): log a sample every this many iterations. Default: 50.
        warmup_iters (int): iterations before the start sample. Default: 5.
        out_file (str): JSON file written in the work dir. Default: ``'memory.json'``.
        trim (bool): release the main process's freed heap memory before each sample (see
            :meth:`sample`); without it the RSS of a healthy run moves by about one batch
            depending on when the allocator last grew. Default: True.
    """

    priority = 'LOW'

    def __init__(self, interval=50, warmup_iters=5, out_file='memory.json', trim=True):
        if int(interval) <= 0 or int(warmup_iters) < 1:
            raise ValueError(f'MemoryMonitorHook: interval must be > 0 and warmup_iters >= 1, '
                             f'got interval={interval}, warmup_iters={warmup_iters}')
        self.interval, self.warmup_iters, self.out_file = int(interval), int(warmup_iters), out_file
        self.trim = trim
        self.samples = {}
        self._enabled = osp.isdir('/proc/self')

    @staticmethod
    def sample(trim=False):
        """One measurement: main process and the sum over its children (workers).

        With ``trim``, the main process first returns freed heap memory to the system
        (``gc.collect()`` + glibc ``malloc_trim(0)``), so that its RSS counts memory in use rather
        than what the allocator keeps cached from the largest batch seen so far."""
        from clusterseg.utils.benchmark import child_pids, process_memory_mib, release_freed_memory
        if trim:
            release_freed_memory()
        main_rss, main_pss = process_memory_mib(os.getpid())
        kids = [process_memory_mib(p) for p in child_pids()]
        kids = [k for k in kids if k[0] is not None]
        return dict(main_rss=main_rss, main_pss=main_pss, num_workers=len(kids),
                    workers_rss=sum(k[0] for k in kids),
                    workers_pss=(sum(k[1] for k in kids)
                                 if all(k[1] is not None for k in kids) else None))

    def before_run(self, runner):
        if not self._enabled:
            runner.logger.warning('MemoryMonitorHook: /proc is not available; not measuring')

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if not self._enabled:
            return
        it = runner.iter + 1
        if it == self.warmup_iters:
            from clusterseg.utils.benchmark import reset_peak_memory
            self.samples['start'] = dict(self.sample(self.trim), iter=it)
            self._peak_base = reset_peak_memory('cpu')
        if it % self.interval == 0:
            s = self.sample(self.trim)
            self.samples.setdefault('trace', []).append(
                dict(iter=it, main_rss=round(s['main_rss'], 1),
                     workers_rss=round(s['workers_rss'], 1)))
            runner.message_hub.update_scalar('train/rss_main_mib', s['main_rss'])
            runner.message_hub.update_scalar('train/rss_workers_mib', s['workers_rss'])
        # sample the end inside the last iteration: non-persistent workers exit with the epoch
        if 'end' not in self.samples:
            if isinstance(runner.train_loop, EpochBasedTrainLoop):
                last = batch_idx + 1 == len(runner.train_loop.dataloader)
            else:
                last = it == runner.max_iters
            if last:
                self._finish(runner, it)

    def _finish(self, runner, it):
        import json
        if 'start' not in self.samples:
            runner.logger.warning(f'MemoryMonitorHook: the run ended before warmup_iters='
                                  f'{self.warmup_iters}; no start sample')
            return
        from clusterseg.utils.benchmark import peak_memory_mib
        peak = peak_memory_mib('cpu') - self._peak_base
        self.samples['end'] = dict(self.sample(self.trim), iter=it,
                                   main_peak_rss=round(peak, 1) if peak == peak else None)
        start, end = self.samples['start'], self.samples['end']
        growth = {k: end[k] - start[k] for k in ('main_rss', 'main_pss', 'workers_rss',
                                                 'workers_pss')
                  if start[k] is not None and end[k] is not None}
        self.samples['growth'] = growth
        path = osp.join(runner.work_dir, self.out_file)
        with open(path, 'w') as f:
            json.dump(self.samples, f, indent=1)
        runner.logger.info(
            f'MemoryMonitorHook: iterations {start["iter"]} -> {end["iter"]}: RSS main '
            f'{start["main_rss"]:.0f} -> {end["main_rss"]:.0f} MiB, workers '
            f'({end["num_workers"]}) {start["workers_rss"]:.0f} -> {end["workers_rss"]:.0f} MiB '
            f'(written to {path})')
