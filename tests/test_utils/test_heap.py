"""Keeping freed memory in the process (clusterseg/utils/heap.py, issue 16 item 1): the CPU
training setting behind ``tools/train.py --keep-freed-memory`` / ``env_cfg.keep_freed_memory``
and the benchmarks' ``--keep-freed-memory``.

Every check runs in a fresh worker process (``run_isolated``): the setting is process-wide and
would change the memory behaviour of the test process itself.
"""
import pytest

from clusterseg.utils import benchmark as bm

MIB = 96  # above glibc's largest mmap threshold (32 MiB): by default mapped afresh on every call


def transient_worker(mib=MIB):
    """measure() of a step that allocates, writes and frees ``mib`` MiB."""
    import numpy as np

    from clusterseg.utils.heap import keeps_freed_memory

    def step():
        np.ones(mib * 2**20 // 8).sum()

    m = bm.measure(step, repeat=2, warmup=1, flop_fn=lambda: None)
    return dict(peak=m['peak_mem_mib'], faults=m['minor_faults'], kept=keeps_freed_memory())


def heap_setting_worker(value):
    from mmengine.config import Config

    from clusterseg.engine.launch import apply_heap_setting
    from clusterseg.utils.heap import keeps_freed_memory
    applied = apply_heap_setting(Config(dict(env_cfg=dict(keep_freed_memory=value))))
    return dict(applied=applied, kept=keeps_freed_memory())


def test_kept_memory_is_reused_without_page_faults():
    default = bm.run_isolated(transient_worker, name='default heap', threads=1)
    kept = bm.run_isolated(transient_worker, name='kept heap', threads=1, keep_freed=True)
    assert not default['kept'] and kept['kept']
    # by default every call maps its 96 MiB afresh: one fault per page (4 KiB, or a few more
    # where the kernel uses huge pages); kept: the memory of the warm-up call is reused
    assert default['faults'] > 10 * max(kept['faults'], 1), (default, kept)
    assert kept['faults'] < 0.05 * MIB * 256, kept
    # both peaks count the step's 96 MiB: the default one in the timed calls, the kept one from
    # the warm-up on (the memory the process holds)
    assert 0.9 * MIB < default['peak'] < 1.5 * MIB, default
    assert 0.9 * MIB < kept['peak'] < 1.5 * MIB, kept


def test_env_cfg_keep_freed_memory_is_applied_and_checked():
    assert bm.run_isolated(heap_setting_worker, dict(value=True), name='on') == dict(applied=True,
                                                                                   kept=True)
    assert bm.run_isolated(heap_setting_worker, dict(value=False), name='off') == dict(applied=False,
                                                                                     kept=False)
    with pytest.raises(bm.WorkerError, match=r'env_cfg.keep_freed_memory must be True or False, '
                                             r"got 'yes'"):
        bm.run_isolated(heap_setting_worker, dict(value='yes'), name='typo')


def test_train_flag_sets_the_config_key(synthetic_root, tmp_path):
    from tests.test_reliability.test_run_validation import CLS, _train_cfg
    cfg = _train_cfg(CLS, synthetic_root / 'imagenet', [], tmp_path / 'off')
    assert cfg.env_cfg.get('keep_freed_memory', False) is False
    cfg = _train_cfg(CLS, synthetic_root / 'imagenet', [], tmp_path / 'on',
                     flags=['--keep-freed-memory'])
    assert cfg.env_cfg.keep_freed_memory is True
    assert cfg.env_cfg.get('mp_cfg') is not None  # the config's other env settings stay
