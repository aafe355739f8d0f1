"""Sphinx configuration of the clusterseg user guide (markdown pages, read by myst-parser).

Build: ``make docs`` (= ``python -m sphinx -W -b html docs/en docs/en/_build/html``).
Every build first regenerates the model zoo pages from ``model-index.yml`` and the metafiles
(``gen_model_zoo.py``).
"""
import importlib.util
import os.path as osp
import re

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))


def _load_generator():
    # loaded from its path: docs/en is not put on sys.path, so no module here can shadow the
    # standard library for Sphinx or its extensions
    spec = importlib.util.spec_from_file_location('clusterseg_docs_gen_model_zoo',
                                                  osp.join(HERE, 'gen_model_zoo.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_model_zoo = _load_generator()
gen_model_zoo.write_model_zoo(REPO, HERE)
_README_COPIES = gen_model_zoo.readme_copies(REPO)

project = 'clusterseg'
author = 'clusterseg contributors'
copyright = 'clusterseg contributors, Apache 2.0'
# the version without importing clusterseg (its import checks the installed mm* stack)
with open(osp.join(REPO, 'clusterseg', 'version.py')) as f:
    release = version = re.search(r"__version__ = '([^']+)'", f.read()).group(1)

extensions = ['myst_parser']
source_suffix = {'.md': 'markdown'}
root_doc = 'index'
exclude_patterns = ['_build']
# GitHub-style anchors for headings (links such as README.md#speed-cpu-this-machine)
myst_heading_anchors = 4
pygments_style = 'sphinx'

# sphinx-rtd-theme when installed (requirements/docs.txt), Sphinx's built-in alabaster otherwise
try:
    import sphinx_rtd_theme  # noqa: F401
    html_theme = 'sphinx_rtd_theme'
except ImportError:
    html_theme = 'alabaster'
html_title = f'clusterseg {release}'
html_static_path = ['_static']


def _repoint_readme_links(app, docname, source):
    """Links from the pages to ``configs/<method>/README.md`` (which GitHub shows) go to the
    README's generated copy under ``model_zoo/`` in the built docs."""
    src_dir = osp.dirname(app.env.doc2path(docname))
    source[0] = gen_model_zoo.rewrite_links(source[0], src_dir, src_dir, _README_COPIES, HERE)


def setup(app):
    app.connect('source-read', _repoint_readme_links)
