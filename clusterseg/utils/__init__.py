"""Small helpers; nothing model-specific."""
from .checkpoint import (CheckpointFileError, NotResumableCheckpointError, UnsafeCheckpointError,
                         UnsafeConfigError, safe_torch_load)
from .setup_env import register_all_modules
from .state_dict import (PARTIAL_ENV, CheckpointMismatchError, StateDictMismatchError,
                         load_policy)
from .version_check import check_mm_versions

__all__ = ['CheckpointFileError', 'NotResumableCheckpointError', 'UnsafeCheckpointError',
           'UnsafeConfigError', 'safe_torch_load', 'PARTIAL_ENV',
           'CheckpointMismatchError', 'StateDictMismatchError', 'load_policy',
           'register_all_modules', 'check_mm_versions']
