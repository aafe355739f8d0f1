"""Keep freed memory in the process: a CPU-training speed setting (glibc only).

glibc's malloc serves every block above its mmap threshold (which adapts up to 32 MiB) with a
fresh ``mmap`` and unmaps it on ``free``, and trims the top of the heap past ``M_TRIM_THRESHOLD``.
A training step on the CPU allocates and frees its activations every step, so the kernel maps and
zero-fills them again each time: at 512^2, batch 8, a PaCa-ViT-tiny step takes ~2.3 million minor
page faults and a third of its time in the kernel (docs/en/benchmarks.md). With mmap off and the
trim threshold at its maximum, freed blocks stay in the heap and the next step reuses them: no
faults, at the price of a resident set that stays at the step's peak between steps.

Turned on by ``env_cfg = dict(keep_freed_memory=True)`` in a config, by ``tools/train.py`` /
``tools/test.py --keep-freed-memory``, and by the benchmarks' ``--keep-freed-memory``; the same as
``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<large>`` in the environment, but set from Python.
GPU memory is not affected (the CUDA caching allocator already keeps its blocks).
"""
import ctypes
import ctypes.util

# mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
# the largest trim threshold mallopt takes (an int): freed memory is, in effect, never trimmed
_NEVER_TRIM = 2**31 - 1
_state = dict(kept=False)


def _libc():
    name = ctypes.util.find_library('c') or 'libc.so.6'
    libc = ctypes.CDLL(name)
    if not hasattr(libc, 'mallopt') or not hasattr(libc, 'gnu_get_libc_version'):
        raise OSError(f'{name} is not glibc (no mallopt / gnu_get_libc_version)')
    return libc


def keep_freed_memory():
    """From now on, keep freed memory in this process (and in the processes it forks).

    Returns:
        tuple[bool, str]: whether the setting took effect, and a one-line reason or description.
    """
    try:
        libc = _libc()
    except OSError as e:
        return False, f'keep_freed_memory: not applied ({e})'
    ok = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, _NEVER_TRIM) == 1
    if not ok:
        return False, 'keep_freed_memory: not applied (glibc mallopt refused M_MMAP_MAX / M_TRIM_THRESHOLD)'
    _state['kept'] = True
    return True, ('keep_freed_memory: freed memory stays in the process (glibc mallopt M_MMAP_MAX=0, '
                  'M_TRIM_THRESHOLD=2^31-1): no page faults on the next step, resident set stays '
                  'at the peak')


def keeps_freed_memory():
    """Whether :func:`keep_freed_memory` took effect in this process."""
    return _state['kept']
