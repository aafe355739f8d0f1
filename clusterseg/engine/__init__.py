"""Runner-side glue: config preparation for the tools, CPU distributed set-up, hooks."""
from .hooks import (DatasetCheckHook, DistributedLossMeanHook, EmptyDatasetError, MemoryMonitorHook, NonFiniteLossError, NonFiniteLossHook, install_atomic_last_checkpoint,
                    install_atomic_local_writes, install_empty_dataset_check, install_orphan_cleanup,
                    remove_orphan_tmp_files)
from .runner_setup import (ConfigKeyError, add_distributed_loss_mean, add_input_checks, explain_bad_config_key,
                           add_result_dump, adapt_to_device, check_data_roots, enable_amp,
                           enable_auto_scale_lr, enable_visualization, explain_unknown_type,
                           scope_of, set_trust_checkpoints, set_work_dir, setup_cpu_distributed,
                           teardown_distributed)

__all__ = ['DatasetCheckHook', 'DistributedLossMeanHook', 'EmptyDatasetError', 'MemoryMonitorHook', 'NonFiniteLossError', 'NonFiniteLossHook', 'install_atomic_local_writes',
           'install_atomic_last_checkpoint', 'install_empty_dataset_check', 'install_orphan_cleanup',
           'remove_orphan_tmp_files', 'ConfigKeyError', 'add_distributed_loss_mean', 'add_input_checks', 'explain_bad_config_key',
           'add_result_dump', 'adapt_to_device', 'check_data_roots', 'enable_amp',
           'enable_auto_scale_lr', 'enable_visualization', 'explain_unknown_type', 'scope_of',
           'set_trust_checkpoints', 'set_work_dir', 'setup_cpu_distributed',
           'teardown_distributed']
