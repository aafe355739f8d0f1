"""clusterseg: clustering-attention vision models for the OpenMMLab 2.x stack."""
from clusterseg.utils.version_check import check_mm_versions
from clusterseg.version import __version__, version_info

# Fail early, naming the package, when the mm* stack is not the pinned one.
check_mm_versions()

# torch >= 2.6 loads weights_only: allowlist what OpenMMLab checkpoints contain (see utils/checkpoint).
from clusterseg.utils.checkpoint import install_safe_globals  # noqa: E402

install_safe_globals()

# Testing / inference load a checkpoint strictly; load_from in training reports what loaded
# (see utils/state_dict).
from clusterseg.utils.state_dict import install_load_checks  # noqa: E402

install_load_checks()

# A run killed while saving never leaves a half-written checkpoint or pointer behind (and the
# temporary files of such saves are removed at the next start), and an empty dataset is an
# error that names its data root (clusterseg/engine/hooks.py).
from clusterseg.engine.hooks import (install_atomic_last_checkpoint,  # noqa: E402
                                     install_atomic_local_writes,
                                     install_empty_dataset_check,
                                     install_orphan_cleanup)

install_atomic_local_writes()
install_atomic_last_checkpoint()
install_orphan_cleanup()
install_empty_dataset_check()

# The stock inferencers take a model name of model-index.yml (clusterseg/apis/model_zoo.py).
from clusterseg.apis.model_zoo import install_named_models  # noqa: E402

install_named_models()

__all__ = ['__version__', 'version_info']
