"""clusterseg: clustering-attention vision models for the OpenMMLab 2.x stack.

Importing the package checks the installed mm* versions; it changes nothing in torch or the
OpenMMLab libraries. clusterseg's runtime safety (safe checkpoint loading, strict loads, atomic
writes, empty-dataset errors) is installed by :func:`clusterseg.engine.patches.install`, which the
tools, the ``clusterseg.apis`` entry points and the default runtime configs call
(docs/en/runtime_safety.md).
"""
from clusterseg.utils.version_check import check_mm_versions
from clusterseg.version import __version__, version_info

# Fail early, naming the package, when the mm* stack is not the pinned one.
check_mm_versions()

__all__ = ['__version__', 'version_info']
