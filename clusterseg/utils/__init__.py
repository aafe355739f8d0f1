"""Small helpers; nothing model-specific."""
from .checkpoint import (UnsafeCheckpointError, UnsafeConfigError, install_safe_globals,
                         safe_torch_load)
from .setup_env import register_all_modules
from .version_check import check_mm_versions

__all__ = ['UnsafeCheckpointError', 'UnsafeConfigError', 'install_safe_globals', 'safe_torch_load',
           'register_all_modules', 'check_mm_versions']
