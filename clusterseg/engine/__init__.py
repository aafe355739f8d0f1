"""The runtime around the models, one module per job:

* :mod:`.config`: the command line -> the config of a run (:func:`prepare_config`);
* :mod:`.launch`: device and distributed set-up, building and running the runner (:func:`run`);
* :mod:`.errors`: explained errors and the input checks put into a config;
* :mod:`.validate`: the static checks of a config before anything is built;
* :mod:`.patches`: clusterseg's runtime safety in torch / mmengine, :func:`install`;
* :mod:`.hooks`: the runner hooks; :mod:`.data_checks`: COCO annotation audits.
"""
from . import compile as _compile  # noqa: F401  (registers CompileHook for saved configs)
from .config import (add_result_dump, enable_amp, enable_auto_scale_lr, enable_visualization,
                     prepare_config, scope_of, set_trust_checkpoints, set_work_dir, use_tta)
from .errors import (SCOPES, ConfigKeyError, EmptyDatasetError, UnknownTypeError,
                     add_input_checks, check_data_roots, explain_bad_config_key,
                     explain_unknown_type, explained_errors, strip_input_checks)
from .hooks import (DatasetCheckHook, DistributedLossMeanHook, MemoryMonitorHook,
                    NonFiniteLossError, NonFiniteLossHook, RuntimeSafetyHook)
from .launch import (adapt_to_device, add_distributed_loss_mean, build_runner, run,
                     setup_cpu_distributed, teardown_distributed)
from .patches import install, installed, remove_orphan_tmp_files

__all__ = [
    # config
    'prepare_config', 'set_work_dir', 'scope_of', 'enable_amp', 'enable_auto_scale_lr',
    'enable_visualization', 'add_result_dump', 'set_trust_checkpoints', 'use_tta',
    # launch
    'run', 'build_runner', 'adapt_to_device', 'add_distributed_loss_mean',
    'setup_cpu_distributed', 'teardown_distributed',
    # errors and input checks
    'SCOPES', 'ConfigKeyError', 'UnknownTypeError', 'EmptyDatasetError', 'explained_errors',
    'explain_unknown_type', 'explain_bad_config_key', 'check_data_roots', 'add_input_checks',
    'strip_input_checks',
    # runtime safety
    'install', 'installed', 'remove_orphan_tmp_files',
    # hooks
    'RuntimeSafetyHook', 'DatasetCheckHook', 'DistributedLossMeanHook', 'MemoryMonitorHook',
    'NonFiniteLossError', 'NonFiniteLossHook',
]
