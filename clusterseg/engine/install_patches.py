"""Importing this module runs :func:`clusterseg.engine.patches.install`.

It exists for configs: the default runtime bases (``configs/_base_/default_runtime_*.py``) list
it in ``custom_imports``, so reading a clusterseg config with ``Config.fromfile`` (the tools, a
``Runner``, mim, the stock inferencers) installs clusterseg's runtime safety before any model,
checkpoint or dataset is built. Nothing in clusterseg imports it; code calls ``install()``.
"""
from clusterseg.engine.patches import install

install()
