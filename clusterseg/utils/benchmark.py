"""The one benchmark harness: isolated workers, best-of timing, one peak memory, FLOPs, one CSV.

Every speed / memory tool (``tools/analysis_tools/benchmark*.py``) and ``MemoryMonitorHook``
measures through this module, so a figure means the same wherever it is printed:

* **Isolation** -- :func:`run_isolated` calls a module-level function in a fresh Python process
  (its own allocator, its own thread pool, nothing left over from the previous point) and returns
  its JSON-able result. A worker that raises, crashes (e.g. killed when out of memory) or runs
  past its time limit comes back as a :class:`WorkerError` whose message starts with the model's
  name.
* **Time** -- :func:`best_of`: the minimum over ``repeat`` calls after ``warmup`` untimed ones, the
  figure least disturbed by other processes; on CUDA every call is synchronised.
* **Peak memory** -- one definition per device, read by :class:`PeakMemory`
  (:func:`reset_peak_memory` / :func:`peak_memory_mib`): the MiB the timed calls need on top of
  what the process held just before the first of them (the built model, its inputs, and what the
  warm-up calls left behind: loaded kernels and caches are one-time costs, not the model's):

  - CPU: the high-water mark of the process's resident set (``VmHWM``) during the calls minus its
    resident set (``VmRSS``) just before them. The mark is reset there (``/proc/self/clear_refs``),
    after freed heap memory has been handed back to the system (``gc`` + ``malloc_trim``), so
    neither the model build nor memory the allocator merely caches counts. Where the reset is not
    allowed, a thread samples ``VmRSS`` every millisecond instead (a peak shorter than that may be
    missed). Linux only (``/proc``); elsewhere NaN.
  - CUDA: ``torch.cuda.max_memory_allocated`` during the calls minus ``memory_allocated`` just
    before them (tensors only: the caching allocator's reserve and the CUDA context do not count).

* **FLOPs** -- :func:`count_flops`, torch's ``FlopCounterMode`` (matrix products, convolutions and
  the attention kernels; element-wise ops, norms and softmax are not counted).
* **GEMM fraction** -- :func:`gemm_gflops` measures this machine's fp32 square-matmul throughput
  in the same run with the same threads; a row's ``gemm_fraction`` is its achieved GFLOP/s over
  that. Train steps (forward + backward) count 3x the forward's FLOPs (the backward of a matrix
  product is two products of the same size); this is :data:`TRAIN_FLOP_FACTOR`.
* **CSV** -- one schema, :data:`CSV_FIELDS`, written by :func:`write_csv`; :func:`make_row` fills
  the derived columns.

Only the standard library is imported at import time (``torch`` when a function needs it), so
``clusterseg.engine.hooks`` can use the memory readers at no cost.
"""
import csv
import gc
import importlib
import importlib.util
import json
import math
import os
import os.path as osp
import subprocess
import sys
import tempfile
import threading
import time
import traceback

CSV_FIELDS = ('model', 'mode', 'height', 'width', 'batch', 'params_M', 'gflop', 'time_s',
              'gflops_per_s', 'gemm_gflops_per_s', 'gemm_fraction', 'peak_mem_mib', 'device',
              'threads', 'note', 'error')
TRAIN_FLOP_FACTOR = 3
MODES = ('infer', 'train')


# ---------------------------------------------------------------------------------- memory
def _is_cuda(device):
    return str(device).startswith('cuda')


def _proc_status_mib(pid, keys):
    """Values (MiB) of ``keys`` (e.g. ``'VmRSS'``) in ``/proc/<pid>/status``; missing ones None."""
    out = dict.fromkeys(keys)
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                key = line.split(':', 1)[0]
                if key in out:
                    out[key] = int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return out


def process_memory_mib(pid=None):
    """``(rss, pss)`` of process ``pid`` (default: this one) in MiB, now, from ``/proc`` (Linux).

    ``pss`` (the process's share of pages shared with others, e.g. DataLoader workers'
    copy-on-write pages) is ``None`` where ``smaps_rollup`` is unavailable. Returns
    ``(None, None)`` for a process that is gone.
    """
    pid = pid or os.getpid()
    rss = _proc_status_mib(pid, ('VmRSS', ))['VmRSS']
    pss = None
    if rss is not None:
        try:
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


def release_freed_memory():
    """Hand freed heap memory back to the system (``gc.collect()`` + glibc ``malloc_trim(0)``),
    so that the resident set counts memory in use, not what the allocator keeps cached."""
    gc.collect()
    try:
        import ctypes
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


class _RssSampler(threading.Thread):
    """Fallback peak reader: the largest ``VmRSS`` seen, sampled every ``interval`` seconds."""

    def __init__(self, interval=1e-3):
        super().__init__(daemon=True)
        self.interval, self.peak, self._stop_event = interval, 0., threading.Event()

    def run(self):
        while not self._stop_event.is_set():
            rss = process_memory_mib()[0] or 0.
            self.peak = max(self.peak, rss)
            time.sleep(self.interval)

    def stop(self):
        self._stop_event.set()
        self.join()
        self.peak = max(self.peak, process_memory_mib()[0] or 0.)
        return self.peak


_sampler = None  # the running fallback sampler, if the high-water mark cannot be reset


def reset_peak_memory(device='cpu'):
    """Start a peak-memory window on ``device``; returns the memory in use now (MiB), the baseline
    that :func:`peak_memory_mib` is compared with (see the module docstring for the definition)."""
    global _sampler
    if _is_cuda(device):
        import torch
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    if _sampler is not None:
        _sampler.stop()
        _sampler = None
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # reset this process's VmHWM to its VmRSS (Linux >= 4.0)
    except OSError:
        _sampler = _RssSampler()
        _sampler.start()
    rss = process_memory_mib()[0]
    return float('nan') if rss is None else rss


def peak_memory_mib(device='cpu'):
    """The high-water mark (MiB, absolute) on ``device`` since :func:`reset_peak_memory`."""
    if _is_cuda(device):
        import torch
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    if _sampler is not None:
        return max(_sampler.peak, process_memory_mib()[0] or 0.)
    hwm = _proc_status_mib(os.getpid(), ('VmHWM', ))['VmHWM']
    return float('nan') if hwm is None else hwm


class PeakMemory:
    """``with PeakMemory(device) as mem: ...`` then ``mem.mib``: the peak memory of the block, the
    one definition of the module docstring (MiB above the state at entry, never negative)."""

    def __init__(self, device='cpu', enabled=True):
        self.device, self.mib, self.base = str(device), float('nan'), float('nan')
        self.enabled = enabled  # False: a no-op window (mib stays NaN)

    def __enter__(self):
        if not self.enabled:
            return self
        if not _is_cuda(self.device):
            release_freed_memory()
        self.base = reset_peak_memory(self.device)
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.mib = max(0., peak_memory_mib(self.device) - self.base)
        return False


def available_memory_mib(device='cpu'):
    """Memory a point may still use: free GPU memory, or the system's ``MemAvailable``."""
    if _is_cuda(device):
        import torch
        return torch.cuda.mem_get_info(device)[0] / 2**20
    try:
        with open('/proc/meminfo') as f:
            info = dict(line.split(':', 1) for line in f)
        return int(info['MemAvailable'].split()[0]) / 1024
    except (OSError, KeyError):
        return float('inf')


# ---------------------------------------------------------------------------------- timing
def sync(device):
    """Wait for queued CUDA work (no-op on CPU), so that a clock reading covers it."""
    if _is_cuda(device):
        import torch
        torch.cuda.synchronize(device)


def best_of(fn, repeat=3, warmup=1, device='cpu', clock=time.perf_counter):
    """``(best, times)``: seconds of the fastest of ``repeat`` calls of ``fn()`` after ``warmup``
    untimed ones, and the timed calls' seconds in call order. ``clock`` e.g.
    ``time.process_time`` for CPU time."""
    if int(repeat) < 1 or int(warmup) < 0:
        raise ValueError(f'best_of: repeat must be >= 1 and warmup >= 0, got repeat={repeat}, '
                         f'warmup={warmup}')
    for _ in range(int(warmup)):
        fn()
        sync(device)
    times = []
    for _ in range(int(repeat)):
        sync(device)
        t0 = clock()
        fn()
        sync(device)
        times.append(clock() - t0)
    return min(times), times


def best_of_interleaved(fns, repeat=3, warmup=1, device='cpu', clock=time.perf_counter):
    """Best-of timing of several ``{name: fn}`` round-robin (one call of each per round), so that
    load from other processes hits all of them alike. Returns ``{name: best seconds}``."""
    if int(repeat) < 1 or int(warmup) < 0:
        raise ValueError(f'best_of_interleaved: repeat must be >= 1 and warmup >= 0, got '
                         f'repeat={repeat}, warmup={warmup}')
    best = {name: math.inf for name in fns}
    for rnd in range(int(warmup) + int(repeat)):
        for name, fn in fns.items():
            sync(device)
            t0 = clock()
            fn()
            sync(device)
            seconds = clock() - t0
            if rnd >= warmup:
                best[name] = min(best[name], seconds)
    return best


# ---------------------------------------------------------------------------------- FLOPs
class _TotalOnly:
    """Stands in for FlopCounterMode's per-module tracker: only the total is needed, and the
    tracker's autograd hooks fail on a module called with a ``Parameter`` under ``no_grad``
    (kMaX's queries)."""
    parents = ('Global', )

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _grouped_conv_backward_flops(grad_out, x, w, bias, stride, padding, dilation, transposed,
                                 output_padding, groups, output_mask, out_shape=None, **kwargs):
    """FLOPs of ``convolution_backward`` (shapes in), grouped convolutions included: each of the
    two gradients asked for costs what the forward does, ``2 * B * C_out * prod(out) *
    (C_in / groups) * prod(kernel)``. torch's formula forms the weight gradient as a dense
    convolution over the channels, which for a depth-wise conv counts C times its products."""
    import math
    # every weight element meets every position of the map on the kernel's input side of the
    # product: the output for a convolution, the input for a transposed one (weight (C_in,
    # C_out / groups, k...) there); w[0] * w[1] is C_out * C_in / groups either way
    side = x if transposed else grad_out
    forward = 2 * side[0] * math.prod(side[2:]) * w[0] * w[1] * math.prod(w[2:])
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def _flop_mapping():
    """Formulas ``FlopCounterMode`` lacks or gets wrong. torch's own SDPA formulas for the CPU
    fused kernel, which it does not register (it counts 0 FLOPs for
    ``_scaled_dot_product_flash_attention_for_cpu`` and its backward): 4 * B * h * N * M * d
    forward (QK^T and PV), 2.5x that backward (five products, QK^T recomputed). And
    :func:`_grouped_conv_backward_flops` for ``convolution_backward``."""
    import torch
    from torch.utils import flop_counter as fc
    aten = torch.ops.aten
    mapping = {aten.convolution_backward: _grouped_conv_backward_flops}
    if hasattr(aten, '_scaled_dot_product_flash_attention_for_cpu'):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu] = (  # shapes in, as registered
            lambda q, k, v, *args, out_shape=None, **kwargs: fc.sdpa_flop_count(q, k, v))
    if hasattr(aten, '_scaled_dot_product_flash_attention_for_cpu_backward'):
        mapping[aten._scaled_dot_product_flash_attention_for_cpu_backward] = (
            lambda g, q, k, v, *args, out_shape=None, **kwargs: fc.sdpa_backward_flop_count(
                g, q, k, v))
    return mapping


def _flop_counter():
    """``FlopCounterMode`` with :func:`_flop_mapping` and only the global total tracked."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False, custom_mapping=_flop_mapping())
    if hasattr(counter, 'mod_tracker'):
        counter.mod_tracker = _TotalOnly()
    return counter


def count_flops(fn):
    """FLOPs of calling ``fn()``, by ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add
    is 2 FLOPs; matrix products, convolutions and attention kernels, the CPU fused attention
    included)."""
    counter = _flop_counter()
    with counter:
        fn()
    return int(counter.get_total_flops())


def default_gemm_size(device='cpu'):
    """The side of the square fp32 matmul that stands for this device's GEMM throughput."""
    return 8192 if _is_cuda(device) else 2048


def gemm_gflops(n=None, repeat=5, device='cpu', threads=None):
    """This machine's fp32 GEMM throughput (GFLOP/s): best of ``repeat`` ``(n, n) @ (n, n)``
    products after one warm-up, with ``threads`` torch threads (default: as set)."""
    import torch
    if threads:
        torch.set_num_threads(int(threads))
    n = int(n or default_gemm_size(device))
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    best, _ = best_of(lambda: a @ b, repeat=repeat, warmup=1, device=device)
    return 2 * n**3 / best / 1e9


# ---------------------------------------------------------------------------------- where the time goes
# the op classes of :func:`op_breakdown`, in the order they are printed: (label, test on an aten
# op's name, e.g. 'aten.addmm.default'); the first that matches wins, the last class takes the rest
OP_CLASSES = (
    ('matrix products', lambda n: n.split('.')[1] in ('mm', 'addmm', 'bmm', 'baddbmm', 'addbmm')),
    ('convolutions', lambda n: 'convolution' in n),
    ('fused attention', lambda n: 'scaled_dot_product' in n),
    ('element-wise, norms, softmax, copies', lambda n: True),
)


def classify_op(name):
    """The label of :data:`OP_CLASSES` an aten op name (``'aten.mm.default'``) falls in."""
    return next(label for label, test in OP_CLASSES if test(name))


def _op_timer():
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    class OpTimer(TorchDispatchMode):
        """Wall time of every aten op called under it, forward and backward (the autograd engine
        runs a CPU backward on the calling thread, so its ops are seen too); synchronises CUDA
        around each op."""

        def __init__(self, device):
            super().__init__()
            self.device, self.seconds = device, {}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            sync(self.device)
            start = time.perf_counter()
            out = func(*args, **(kwargs or {}))
            sync(self.device)
            name = str(func)
            self.seconds[name] = self.seconds.get(name, 0.) + time.perf_counter() - start
            return out

    return OpTimer


def _flops_by_op(fn):
    """FLOPs of calling ``fn()`` per aten op (``'aten.mm.default'`` -> FLOPs), as
    :func:`count_flops` counts them."""
    counter = _flop_counter()
    with counter:
        fn()
    counts = counter.get_flop_counts().get('Global', {})
    return {f'{packet}.default' if str(packet).count('.') == 1 else str(packet): int(v)
            for packet, v in counts.items()}


def op_breakdown(step, repeat=3, warmup=1, device='cpu'):
    """Where the time of ``step()`` goes: wall time and FLOPs per op class (:data:`OP_CLASSES`).

    Each op is timed with ``time.perf_counter`` around its call inside a
    ``TorchDispatchMode`` (not ``torch.profiler``, whose per-op self times on this kind of host
    add up to more than the step). Of ``repeat`` timed steps after ``warmup`` untimed ones, the one
    whose ops took least in total is kept. FLOPs are counted by ``FlopCounterMode`` over one more
    step (forward and backward, each op as it runs; the harness's train rows count 3x the forward
    instead).

    Returns:
        dict: ``step_s`` (best untimed step, as :func:`best_of`), ``timed_step_s`` (the kept step's
        wall time under the timer), ``classes``: a list of dicts ``label``, ``seconds``, ``flops``,
        ``ops`` (op name -> seconds, largest first), in :data:`OP_CLASSES` order; ``outside_ops_s``:
        the kept step's time outside aten ops (Python, the autograd engine, the timer itself).
    """
    step_s, _ = best_of(step, repeat, warmup, device)
    timer_cls = _op_timer()
    best = None
    for _ in range(max(1, repeat)):
        timer = timer_cls(device)
        start = time.perf_counter()
        with timer:
            step()
        sync(device)
        wall = time.perf_counter() - start
        if best is None or sum(timer.seconds.values()) < sum(best[0].values()):
            best = (timer.seconds, wall)
    seconds, wall = best
    flops = _flops_by_op(step)
    classes = []
    for label, _ in OP_CLASSES:
        ops = {n: s for n, s in seconds.items() if classify_op(n) == label}
        classes.append(dict(label=label, seconds=sum(ops.values()),
                            flops=sum(f for n, f in flops.items() if classify_op(n) == label),
                            ops=dict(sorted(ops.items(), key=lambda kv: -kv[1]))))
    return dict(step_s=step_s, timed_step_s=wall, classes=classes,
                outside_ops_s=max(0., wall - sum(seconds.values())))


def format_breakdown(result, gemm_gflops_per_s, headline_flops=None, top=3):
    """Lines of a table of :func:`op_breakdown`'s result: per class its time, share of the ops'
    time, GFLOP, GFLOP/s and that over ``gemm_gflops_per_s``, its largest ops; then the ceilings
    of the GEMM fraction (``headline_flops``, e.g. a train row's 3x-forward count, over the GEMM
    rate) if only the matrix products, then only the classes with FLOPs, took time."""
    classes = result['classes']
    total = sum(c['seconds'] for c in classes) or float('nan')
    lines = [f"{'op class':38s} {'ms':>8s} {'share':>6s} {'GFLOP':>7s} {'GFLOP/s':>8s} "
             f"{'xGEMM':>6s}  largest ops (ms)"]
    for c in classes:
        rate = c['flops'] / c['seconds'] / 1e9 if c['flops'] and c['seconds'] else float('nan')
        largest = ', '.join(f"{n.replace('aten.', '').replace('.default', '')} {s * 1e3:.1f}"
                            for n, s in list(c['ops'].items())[:top])
        lines.append(f"{c['label']:38s} {c['seconds'] * 1e3:8.1f} {c['seconds'] / total:6.2f} "
                     f"{c['flops'] / 1e9:7.1f} {_fmt(rate, 1):>8s} "
                     f"{_fmt(rate / gemm_gflops_per_s if gemm_gflops_per_s else float('nan'), 2):>6s}"
                     f"  {largest}")
    lines.append(f"{'(outside aten ops: Python, autograd, timer)':38s} {result['outside_ops_s'] * 1e3:8.1f}")
    lines.append(f"step {result['step_s'] * 1e3:.1f} ms untimed, {result['timed_step_s'] * 1e3:.1f} ms "
                 f"under the op timer")
    if headline_flops and gemm_gflops_per_s:
        ideal = headline_flops / 1e9 / gemm_gflops_per_s  # seconds at the square-GEMM rate
        gemm_s = classes[0]['seconds']
        counted_s = sum(c['seconds'] for c in classes if c['flops'])
        lines.append(f"GEMM fraction now {ideal / result['step_s']:.2f}; ceiling if nothing but the "
                     f"matrix products took time: {ideal / gemm_s:.2f}; if only the ops with FLOPs "
                     f"(products, convolutions, attention) did: {ideal / counted_s:.2f}")
    return lines


# ---------------------------------------------------------------------------------- one point
def measure(step, repeat=3, warmup=1, device='cpu', flop_fn=None, flop_scale=1,
            clock=time.perf_counter, keep_freed=None):
    """Time, peak memory and FLOPs of ``step()``, the harness's one measurement.

    Args:
        step (callable): one call of what is measured (a forward, a train step, ...).
        repeat, warmup (int): see :func:`best_of`.
        device (str): where ``step`` runs (peak memory and synchronisation).
        flop_fn (callable | None): counted once after timing, times ``flop_scale`` (e.g. the
            forward of a train step with ``flop_scale=TRAIN_FLOP_FACTOR``). ``None``: the first
            warm-up call of ``step`` is counted (a separate call when ``warmup`` is 0).
        flop_scale (int | float): factor on the counted FLOPs.
        clock (callable): the clock of :func:`best_of`.
        keep_freed (bool | None): the process keeps freed memory
            (:func:`clusterseg.utils.heap.keep_freed_memory`; ``None``: whether this process was
            set so, e.g. by ``run_isolated(keep_freed=True)``): then the peak-memory window opens
            before the warm-up and nothing is handed back to the system between the warm-up and
            the timed calls, so that these run on the memory the warm-up left, as every step but
            the first of a training run does, and the peak counts that memory.

    Returns:
        dict: ``time_s`` (best), ``times`` (the timed calls' seconds, in order), ``peak_mem_mib``
        (:class:`PeakMemory` over the timed calls, after the warm-up; with ``keep_freed``, over
        the warm-up and the timed calls), ``flops`` (int) and ``minor_faults`` (this process's
        minor page faults per timed call: memory the kernel mapped in afresh).
    """
    if keep_freed is None:
        from clusterseg.utils.heap import keeps_freed_memory
        keep_freed = keeps_freed_memory()
    flops = None
    with PeakMemory(device, enabled=keep_freed) as kept:
        if flop_fn is None and warmup > 0:
            flops = count_flops(step)
            sync(device)
            warmup -= 1
        for _ in range(warmup):
            step()
            sync(device)
        with PeakMemory(device, enabled=not keep_freed) as mem:
            faults = _minor_faults()
            best, times = best_of(step, repeat, 0, device, clock)
            faults = (_minor_faults() - faults) / repeat
    mem = kept if keep_freed else mem
    if flops is None:
        flops = count_flops(flop_fn or step)
    return dict(time_s=best, times=times, peak_mem_mib=mem.mib, flops=int(flops * flop_scale),
                minor_faults=faults)


def _minor_faults():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


# ---------------------------------------------------------------------------------- rows
def _hw(size):
    if isinstance(size, str):
        parts = size.lower().split('x')
        size = tuple(int(p) for p in parts) if len(parts) == 2 else int(parts[0])
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def gemm_fraction(flops, seconds, gemm_gflops_per_s):
    """Achieved FLOP/s over the machine's fp32 GEMM FLOP/s (NaN where anything is missing)."""
    if not flops or not seconds or not gemm_gflops_per_s or seconds != seconds:
        return float('nan')
    return flops / seconds / 1e9 / gemm_gflops_per_s


def make_row(model, mode, size, batch, time_s=float('nan'), flops=None, params=None,
             peak_mem_mib=float('nan'), gemm_gflops_per_s=None, device='cpu', threads=None,
             note='', error=''):
    """One result in the :data:`CSV_FIELDS` schema; ``size`` is S (square) or ``(H, W)``."""
    if mode not in MODES:
        raise ValueError(f'make_row: mode must be one of {MODES}, got {mode!r}')
    h, w = _hw(size)
    nan = float('nan')
    gflop = flops / 1e9 if flops else nan
    return dict(model=model, mode=mode, height=h, width=w, batch=int(batch),
                params_M=params / 1e6 if params else nan, gflop=gflop, time_s=time_s,
                gflops_per_s=gflop / time_s if flops and time_s == time_s and time_s else nan,
                gemm_gflops_per_s=gemm_gflops_per_s if gemm_gflops_per_s else nan,
                gemm_fraction=gemm_fraction(flops, time_s, gemm_gflops_per_s),
                peak_mem_mib=peak_mem_mib, device=str(device), threads=threads or '',
                note=note, error=error)


def size_label(row):
    return str(row['height']) if row['height'] == row['width'] else f"{row['height']}x{row['width']}"


def _fmt(value, digits):
    if isinstance(value, float):
        return '-' if value != value else f'{value:.{digits}f}'
    return str(value)


def format_row(row):
    """One line: model, size, batch, mode, the measured columns and the note (or the error)."""
    head = f"{row['model']:<20} {size_label(row):>9} B={row['batch']:<2} {row['mode']:<5}"
    if row['error']:
        return f"{head} {row['error']}"
    return (f"{head} {_fmt(row['time_s'], 3):>8} s  {_fmt(row['gflop'], 1):>7} GFLOP  "
            f"{_fmt(row['gflops_per_s'], 1):>6} GFLOP/s  GEMM x{_fmt(row['gemm_fraction'], 2)}  "
            f"peak {_fmt(row['peak_mem_mib'], 0)} MiB  {_fmt(row['params_M'], 1)}M params"
            + (f"  ({row['note']})" if row.get('note') else ''))


def format_table(rows):
    """A Markdown table of ``rows`` (errors and skips in the last column)."""
    lines = ['| model | size | batch | mode | params (M) | GFLOP | time (s) | GFLOP/s | GEMM fraction '
             '| peak memory (MiB) | note |', '|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|']
    for r in rows:
        lines.append(f"| {r['model']} | {size_label(r)} | {r['batch']} | {r['mode']} | "
                     f"{_fmt(r['params_M'], 1)} | {_fmt(r['gflop'], 1)} | {_fmt(r['time_s'], 3)} | "
                     f"{_fmt(r['gflops_per_s'], 1)} | {_fmt(r['gemm_fraction'], 2)} | "
                     f"{_fmt(r['peak_mem_mib'], 0)} | {r['error'] or r['note']} |")
    return '\n'.join(lines)


def write_csv(rows, path):
    """Write ``rows`` (dicts from :func:`make_row`) in the :data:`CSV_FIELDS` schema."""
    d = osp.dirname(osp.abspath(path))
    os.makedirs(d, exist_ok=True)
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction='ignore')
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()})
    return path


def read_csv(path):
    """Rows of a :func:`write_csv` file, numbers parsed (empty / 'nan' -> NaN)."""
    ints, text = {'height', 'width', 'batch'}, {'model', 'mode', 'device', 'note', 'error'}
    rows = []
    with open(path, newline='') as f:
        for r in csv.DictReader(f):
            if list(r) != list(CSV_FIELDS):
                raise ValueError(f'{path}: columns {list(r)} are not the benchmark schema {CSV_FIELDS}')
            for k, v in r.items():
                if k in ints:
                    r[k] = int(v)
                elif k == 'threads':
                    r[k] = int(v) if v else ''
                elif k not in text:
                    r[k] = float(v) if v not in ('', 'nan') else float('nan')
            rows.append(r)
    return rows


class SizeGuard:
    """Skips points that would not fit or take too long, extrapolated from the same model's last
    smaller point (time and peak memory linear in ``B * H * W``, a lower bound for the models
    that are worse than linear), and every larger point of a model once one was too big.

    Args:
        max_seconds (float | None): budget of one point's calls (warm-up, timed, FLOP count).
        calls (int): calls per point.
        memory_mib (float | None): memory a point may use (default: :func:`available_memory_mib`
            x 0.9 at each check).
        device (str): for the default memory.
    """

    def __init__(self, max_seconds=None, calls=4, memory_mib=None, device='cpu'):
        self.max_seconds, self.calls, self.memory_mib, self.device = max_seconds, calls, memory_mib, device
        self._last, self._too_big = {}, {}

    def check(self, model, size, batch):
        """The reason to skip ``model`` at this point, or ``''`` to run it."""
        h, w = _hw(size)
        key = (model, batch)
        if key in self._too_big:
            return f'skipped: a smaller point was too big ({self._too_big[key]})'
        last = self._last.get(key)
        if last is None:
            return ''
        ratio = h * w / last['pixels']
        est = last['time_s'] * ratio
        if self.max_seconds and est * self.calls > self.max_seconds:
            return (f'skipped: ~{est:.0f} s a call ({ratio:.1f}x the pixels of {last["label"]}), '
                    f'{self.calls} calls > --max-seconds {self.max_seconds:g}')
        mem = last['peak_mem_mib'] * ratio
        avail = self.memory_mib if self.memory_mib is not None else 0.9 * available_memory_mib(self.device)
        if mem == mem and mem > avail:
            return f'skipped: needs ~{mem:.0f} MiB (extrapolated from {last["label"]}), {avail:.0f} MiB free'
        return ''

    def record(self, row):
        """Learn from a finished (or failed / skipped) point."""
        key = (row['model'], row['batch'])
        err = row['error']
        if err.startswith('skipped') or 'ran past' in err or 'killed' in err:
            self._too_big.setdefault(key, f'{size_label(row)}: {err.split(":", 1)[0]}')
        elif not err and row['time_s'] == row['time_s']:
            self._last[key] = dict(pixels=row['height'] * row['width'], time_s=row['time_s'],
                                   peak_mem_mib=row['peak_mem_mib'], label=size_label(row))


# ---------------------------------------------------------------------------------- isolation
class WorkerError(RuntimeError):
    """A worker that raised, crashed or ran too long; ``str(e)`` starts with the model's name.

    Attributes: ``name``, ``kind`` (``'error'``, ``'timeout'``, ``'crash'``), ``detail``
    (the exception / exit description), ``log`` (traceback or stderr tail).
    """

    def __init__(self, name, kind, detail, log=''):
        super().__init__(f'{name}: {detail}')
        self.name, self.kind, self.detail, self.log = name, kind, detail, log


def _describe(exc):
    text = str(exc).strip().splitlines()
    return f'{type(exc).__name__}: {text[0][:300]}' if text else type(exc).__name__


def run_isolated(func, kwargs=None, name=None, threads=None, timeout=None, env=None,
                 keep_freed=False):
    """Call ``func(**kwargs)`` in a fresh Python process and return its (JSON) result.

    Args:
        func (callable): a module-level function of an importable module or of a file (a
            script's functions are loaded from its file, without running its ``__main__`` part).
        kwargs (dict): JSON-able keyword arguments.
        name (str): what is measured, the start of every error message (default: the function).
        threads (int | None): ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` and
            ``torch.set_num_threads`` of the worker.
        timeout (float | None): seconds after which the worker is killed.
        env (dict | None): extra environment variables.
        keep_freed (bool): the worker keeps freed memory
            (:func:`clusterseg.utils.heap.keep_freed_memory`, before anything else), and
            :func:`measure` times its calls on the memory the warm-up left.

    Raises:
        WorkerError: the worker raised (``kind='error'``, the exception's type and first line),
        crashed or was killed (``'crash'``, e.g. out of memory) or ran past ``timeout``.
    """
    name = name or func.__name__
    module = getattr(func, '__module__', None)
    payload = dict(module=module, path=osp.abspath(sys.modules[module].__file__) if module in sys.modules
                   and getattr(sys.modules[module], '__file__', None) else None,
                   func=func.__name__, kwargs=kwargs or {}, sys_path=[p or os.getcwd() for p in sys.path],
                   threads=threads, keep_freed=bool(keep_freed))
    full_env = dict(os.environ, PYTHONUNBUFFERED='1', **(env or {}))
    if threads:
        full_env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    fd, result_path = tempfile.mkstemp(prefix='clusterseg-bench-', suffix='.json')
    os.close(fd)
    payload['result'] = result_path
    try:
        try:
            proc = subprocess.run([sys.executable, osp.abspath(__file__), '--worker'],
                                  input=json.dumps(payload), capture_output=True, text=True,
                                  timeout=timeout, env=full_env)
        except subprocess.TimeoutExpired:
            raise WorkerError(name, 'timeout', f'ran past {timeout:.0f} s and was stopped') from None
        try:
            with open(result_path) as f:
                result = json.load(f)
        except (OSError, ValueError):
            result = None
    finally:
        if osp.exists(result_path):
            os.remove(result_path)
    if result is None:
        tail = proc.stderr.strip().splitlines()
        if proc.returncode < 0:
            import signal
            sig = signal.Signals(-proc.returncode).name
            detail = f'worker killed by {sig}' + (' (out of memory?)' if sig == 'SIGKILL' else '')
        else:
            detail = f'worker exited {proc.returncode}' + (f': {tail[-1][:300]}' if tail else '')
        raise WorkerError(name, 'crash', detail, proc.stderr[-4000:])
    if 'error' in result:
        raise WorkerError(name, 'error', result['error'], result.get('traceback', ''))
    return result['ok']


def _load_function(payload):
    module = payload['module']
    if module and module != '__main__':
        try:
            mod = importlib.import_module(module)
            if payload['path'] is None or osp.abspath(getattr(mod, '__file__', '') or '') == payload['path']:
                return getattr(mod, payload['func'])
        except ImportError:
            pass
    if not payload['path']:
        raise ImportError(f'cannot find the worker function {payload["func"]!r} of {module!r}')
    spec = importlib.util.spec_from_file_location('_clusterseg_bench_target', payload['path'])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return getattr(mod, payload['func'])


def _worker_main():
    payload = json.load(sys.stdin)
    sys.path[:] = payload['sys_path'] + [p for p in sys.path if p not in payload['sys_path']]
    try:
        if payload.get('keep_freed'):
            from clusterseg.utils.heap import keep_freed_memory
            ok, message = keep_freed_memory()
            if not ok:
                raise RuntimeError(message)
        if payload['threads']:
            import torch
            torch.set_num_threads(int(payload['threads']))
        result = dict(ok=_load_function(payload)(**payload['kwargs']))
        text = json.dumps(result)
    except BaseException as e:  # noqa: B902  (everything goes back to the parent)
        text = json.dumps(dict(error=_describe(e), traceback=traceback.format_exc()[-4000:]))
    with open(payload['result'], 'w') as f:
        f.write(text)


if __name__ == '__main__' and sys.argv[1:] == ['--worker']:
    # run as a script: do not let this directory (clusterseg/utils) shadow top-level modules
    if sys.path and osp.abspath(sys.path[0]) == osp.dirname(osp.abspath(__file__)):
        sys.path.pop(0)
    _worker_main()
