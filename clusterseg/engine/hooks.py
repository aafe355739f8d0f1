"""Runner hooks: stop on a non-finite loss, write checkpoints atomically."""
import math
import os
import os.path as osp
import re

from mmengine.hooks import Hook
from mmengine.runner import EpochBasedTrainLoop

from clusterseg.registry import HOOKS


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


# NAME.tmp-PID: the temporary file of an atomic write by process PID
_TMP_NAME = re.compile(r'^.+\.tmp-(\d+)$')
_IN_FLIGHT = set()  # this process's temporary files being written now
_SWEPT = set()  # folders already cleaned of orphans by this process


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def remove_orphan_tmp_files(directory):
    """Remove the ``NAME.tmp-PID`` files of atomic writes in ``directory`` whose process is gone.

    A process killed while saving leaves its temporary file behind (the final path keeps the
    previous complete file). A file is an orphan when its PID is not a running process, or is
    this process but not one of its writes in progress (a restart that got the same PID, as in a
    container). A temporary file of another running process is kept: it may be a save in
    progress. PIDs are per machine: a work dir shared by runs on several machines may see one
    machine's in-progress file as an orphan on another (rank 0 saves and cleans).

    Returns:
        list[str]: the removed paths.
    """
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        m = _TMP_NAME.match(name)
        path = osp.join(directory, name)
        if m is None or osp.abspath(path) in _IN_FLIGHT or not osp.isfile(path):
            continue
        pid = int(m.group(1))
        if pid != os.getpid() and _pid_alive(pid):
            continue
        try:
            size = osp.getsize(path)
            os.remove(path)
        except OSError:
            continue
        removed.append(path)
        from mmengine.logging import print_log
        print_log(f'removed {path} ({size / 2**20:.1f} MiB), the temporary file of a save that was '
                  f'interrupted (process {pid} is gone)', logger='current')
    return removed


def _sweep_once(directory):
    directory = osp.abspath(directory)
    if directory not in _SWEPT:
        _SWEPT.add(directory)
        remove_orphan_tmp_files(directory)


def install_orphan_cleanup():
    """Remove the temporary files of interrupted saves (:func:`remove_orphan_tmp_files`) from the
    work dir when ``Runner.train`` starts (main process). Folders outside the work dir (a
    ``CheckpointHook`` ``out_dir``) are swept at their first write. Idempotent."""
    from mmengine.dist import is_main_process
    from mmengine.runner import Runner
    if getattr(Runner.train, '_clusterseg_sweeps', False):
        return
    train = Runner.train

    def wrapped(self, *args, **kwargs):
        if is_main_process():
            _sweep_once(self.work_dir)
        return train(self, *args, **kwargs)

    wrapped.__name__, wrapped.__doc__ = train.__name__, train.__doc__
    wrapped._clusterseg_sweeps = True
    Runner.train = wrapped


def install_atomic_local_writes():
    """Make mmengine's local file writes (checkpoints included) atomic.

    mmengine writes a checkpoint straight into its final path, so a run killed while saving
    leaves a truncated ``iter_N.pth`` behind. Writing to a temporary file in the same folder and
    renaming it with ``os.replace`` means a checkpoint path either holds a whole file or nothing.
    The first write into a folder removes the temporary files earlier processes left there
    (:func:`remove_orphan_tmp_files`). Idempotent.
    """
    from mmengine.fileio.backends import local_backend
    backend = local_backend.LocalBackend
    if getattr(backend.put, '_clusterseg_atomic', False):
        return

    def put(self, obj, filepath):
        filepath = str(filepath)
        folder = os.path.dirname(os.path.abspath(filepath))
        os.makedirs(folder, exist_ok=True)
        _sweep_once(folder)
        tmp = f'{filepath}.tmp-{os.getpid()}'
        _IN_FLIGHT.add(osp.join(folder, osp.basename(tmp)))
        try:
            with open(tmp, 'wb') as f:
                f.write(obj)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, filepath)
        finally:
            _IN_FLIGHT.discard(osp.join(folder, osp.basename(tmp)))
            if os.path.exists(tmp):
                os.remove(tmp)

    put._clusterseg_atomic = True
    backend.put = put


class _AtomicTextWriter:
    """A text file opened for writing that appears at its path only once complete."""

    def __init__(self, path, encoding=None):
        self.path = str(path)
        self.tmp = f'{self.path}.tmp-{os.getpid()}'
        _IN_FLIGHT.add(osp.abspath(self.tmp))
        self.f = open(self.tmp, 'w', encoding=encoding)

    def write(self, text):
        return self.f.write(text)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self.f.flush()
                os.fsync(self.f.fileno())
                self.f.close()
                os.replace(self.tmp, self.path)
        finally:
            if not self.f.closed:
                self.f.close()
            if os.path.exists(self.tmp):
                os.remove(self.tmp)
            _IN_FLIGHT.discard(osp.abspath(self.tmp))
        return False


def install_atomic_last_checkpoint():
    """Write the ``last_checkpoint`` pointer (what ``--resume`` reads) atomically.

    mmengine's ``CheckpointHook`` writes ``WORK_DIR/last_checkpoint`` with a plain ``open(..., 'w')``
    right after each checkpoint; a kill in between would leave it empty or truncated, and
    ``--resume`` would then load a wrong path. The pointer is only written after its checkpoint
    was renamed into place (see :func:`install_atomic_local_writes`), so with this it always names
    a complete checkpoint. Idempotent.
    """
    import builtins

    from mmengine.hooks import checkpoint_hook
    if getattr(getattr(checkpoint_hook, 'open', None), '_clusterseg_atomic', False):
        return

    def _open(file, mode='r', *args, **kwargs):
        if os.path.basename(str(file)) == 'last_checkpoint' and mode == 'w':
            return _AtomicTextWriter(file, encoding=kwargs.get('encoding'))
        return builtins.open(file, mode, *args, **kwargs)

    _open._clusterseg_atomic = True
    checkpoint_hook.open = _open  # module global: shadows the builtin for that module only


class EmptyDatasetError(RuntimeError):
    """A dataset the run is about to use holds no samples."""


def _describe_dataset(ds):
    """``Type(data_root=..., ann_file=..., data_prefix=...)`` for a (possibly wrapped) dataset."""
    inner = ds
    while hasattr(inner, 'dataset') and not hasattr(inner, 'data_root'):
        inner = inner.dataset
    parts = [f'{k}={getattr(inner, k)!r}' for k in ('data_root', 'ann_file', 'data_prefix')
             if getattr(inner, k, None)]
    return f'{type(inner).__name__}({", ".join(parts)})'


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
                    f'the {name} dataset is empty: {_describe_dataset(ds)} found no samples '
                    f'(config key {name}_dataloader.dataset). Check data_root / ann_file / '
                    'data_prefix and that the files exist in the expected layout '
                    '(docs/en/get_started.md, "Datasets").')


def install_empty_dataset_check():
    """Make an mmengine ``BaseDataset`` that found no samples raise :class:`EmptyDatasetError`
    naming its data_root / ann_file / data_prefix, instead of numpy's "need at least one array
    to concatenate" from serializing the empty list. Datasets with samples are unaffected.
    Idempotent."""
    from mmengine.dataset import BaseDataset
    orig = BaseDataset._serialize_data
    if getattr(orig, '_clusterseg_checked', False):
        return

    def _serialize_data(self):
        if len(self.data_list) == 0:
            raise EmptyDatasetError(
                f'dataset {_describe_dataset(self)} is empty: it found no samples. Check '
                'data_root / ann_file / data_prefix and that the files exist in the expected '
                'layout (docs/en/get_started.md, "Datasets").')
        return orig(self)

    _serialize_data._clusterseg_checked = True
    BaseDataset._serialize_data = _serialize_data


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


def process_memory_mib(pid):
    """``(rss, pss)`` of process ``pid`` in MiB from ``/proc`` (Linux); ``pss`` (the process's
    share of pages shared with others, e.g. DataLoader workers' copy-on-write pages) is ``None``
    where ``smaps_rollup`` is unavailable. Returns ``(None, None)`` for a process that is gone."""
    rss = pss = None
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    rss = int(line.split()[1]) / 1024
                    break
        with open(f'/proc/{pid}/smaps_rollup') as f:
            for line in f:
                if line.startswith('Pss:'):
                    pss = int(line.split()[1]) / 1024
                    break
    except OSError:
        pass
    return rss, pss


def child_pids(pid=None):
    """Direct children of ``pid`` (default: this process), e.g. its DataLoader workers."""
    pid = pid or os.getpid()
    kids = []
    try:
        for tid in os.listdir(f'/proc/{pid}/task'):
            with open(f'/proc/{pid}/task/{tid}/children') as f:
                kids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return sorted(set(kids))


@HOOKS.register_module()
class MemoryMonitorHook(Hook):
    """Record the resident memory of the training process and of its DataLoader workers.

    A sample is the RSS and PSS (MiB) of the main process and the sum over its child processes
    (the workers). The first sample is taken after ``warmup_iters`` training iterations (the
    model, optimizer state and first batches are allocated by then), the last one after the
    last iteration of the first training epoch (epoch-based loops) or of the run (iteration-based
    loops); every ``interval`` iterations a sample is logged as ``rss_main_mib`` /
    ``rss_workers_mib``. At the end the samples, their growth, and the number of iterations in
    between are written to ``work_dir/out_file`` (JSON) and logged in one line.

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
        if trim:
            import ctypes
            import gc
            gc.collect()
            try:
                ctypes.CDLL('libc.so.6').malloc_trim(0)
            except (OSError, AttributeError):
                pass
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
            self.samples['start'] = dict(self.sample(self.trim), iter=it)
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
        self.samples['end'] = dict(self.sample(self.trim), iter=it)
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
