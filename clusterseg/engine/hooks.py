"""Runner hooks: stop on a non-finite loss, write checkpoints atomically."""
import math
import os

from mmengine.hooks import Hook

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


def install_atomic_local_writes():
    """Make mmengine's local file writes (checkpoints included) atomic.

    mmengine writes a checkpoint straight into its final path, so a run killed while saving
    leaves a truncated ``iter_N.pth`` behind. Writing to a temporary file in the same folder and
    renaming it with ``os.replace`` means a checkpoint path either holds a whole file or nothing.
    Idempotent.
    """
    from mmengine.fileio.backends import local_backend
    backend = local_backend.LocalBackend
    if getattr(backend.put, '_clusterseg_atomic', False):
        return

    def put(self, obj, filepath):
        filepath = str(filepath)
        os.makedirs(os.path.dirname(os.path.abspath(filepath)), exist_ok=True)
        tmp = f'{filepath}.tmp-{os.getpid()}'
        try:
            with open(tmp, 'wb') as f:
                f.write(obj)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, filepath)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    put._clusterseg_atomic = True
    backend.put = put


class _AtomicTextWriter:
    """A text file opened for writing that appears at its path only once complete."""

    def __init__(self, path, encoding=None):
        self.path = str(path)
        self.tmp = f'{self.path}.tmp-{os.getpid()}'
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
