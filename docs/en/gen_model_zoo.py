"""Generate the model zoo pages of the docs from ``model-index.yml`` and the metafiles.

``conf.py`` calls :func:`write_model_zoo` at every Sphinx build, which writes (both gitignored):

* ``docs/en/model_zoo.md``: one table per method (collection), one row per model of its
  metafile: task, dataset, the reference metrics the metafile holds, parameters / FLOPs /
  other metadata when present, the config, and the weights URL or "not published";
* ``docs/en/model_zoo/<method>.md``: a copy of each ``configs/<method>/README.md`` with its
  relative links re-pointed from ``configs/<method>/`` to the copy's place.

Run it by hand with ``python docs/en/gen_model_zoo.py`` to look at the generated markdown.
"""
import os
import os.path as osp
import re

import yaml

DOCS = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(DOCS))
ZOO_PAGE = 'model_zoo.md'
ZOO_DIR = 'model_zoo'
NOT_PUBLISHED = 'not published'
# metadata keys shown as columns, in this order, when any model of a method has them; the
# others (e.g. "Training Resources") follow in the order they first appear
METADATA_ORDER = ('Parameters', 'FLOPs')
METADATA_SKIP = ('Training Data', )
# task of a model without published results, from its config name (OpenMMLab naming:
# the algorithm comes first); the metafiles' own Task strings for the same algorithms
TASK_BY_PREFIX = (
    ('mask-rcnn_', 'Object Detection, Instance Segmentation'),
    ('kmax-deeplab_', 'Panoptic Segmentation'),
    ('kmax-seg_', 'Semantic Segmentation'),
    ('upernet_', 'Semantic Segmentation'),
    ('pacahead_', 'Semantic Segmentation'),
)
CLASSIFICATION = 'Image Classification'


def load_metafiles(repo=REPO):
    """Read ``model-index.yml`` and every metafile it imports.

    Returns:
        list[dict]: one entry per metafile, in the index's order, with ``metafile`` (path
        relative to the repo), ``folder`` (its config folder), ``collections`` and ``models``
        (the metafile's lists; ``models`` never None).
    """
    with open(osp.join(repo, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    out = []
    for metafile in index['Import']:
        with open(osp.join(repo, metafile)) as f:
            meta = yaml.safe_load(f)
        out.append(dict(metafile=metafile, folder=osp.dirname(metafile),
                        collections=meta.get('Collections') or [],
                        models=meta.get('Models') or []))
    return out


def _fmt_number(value, unit, scale):
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return str(value)
    text = f'{value / scale:.3f}'.rstrip('0').rstrip('.')
    return f'{text}{unit}'


def format_metadata(key, value):
    """``Parameters`` in millions, ``FLOPs`` in G; anything else as written."""
    if key == 'Parameters':
        return _fmt_number(value, 'M', 1e6)
    if key == 'FLOPs':
        return _fmt_number(value, 'G', 1e9)
    return str(value)


def model_task(model):
    """The tasks of a model: its results' ``Task`` entries, else inferred from its name."""
    results = model.get('Results') or []
    if results:
        return ', '.join(dict.fromkeys(r['Task'] for r in results))
    name = model['Name']
    for prefix, task in TASK_BY_PREFIX:
        if name.startswith(prefix):
            return task
    return CLASSIFICATION


def model_datasets(model):
    """The datasets of a model: its results' ``Dataset`` entries, else its training data."""
    results = model.get('Results') or []
    if results:
        return ', '.join(dict.fromkeys(r['Dataset'] for r in results))
    data = (model.get('Metadata') or {}).get('Training Data', '–')
    return ', '.join(data) if isinstance(data, list) else str(data)


def metric_columns(models):
    """Every metric name the models' results hold, in order of first appearance."""
    cols = {}
    for m in models:
        for r in m.get('Results') or []:
            for k in r['Metrics']:
                cols.setdefault(k, None)
    return list(cols)


def metadata_columns(models):
    keys = {}
    for m in models:
        for k in (m.get('Metadata') or {}):
            if k not in METADATA_SKIP:
                keys.setdefault(k, None)
    ordered = [k for k in METADATA_ORDER if k in keys]
    return ordered + [k for k in keys if k not in ordered]


def _cell(text):
    return str(text).replace('|', '\\|').replace('\n', ' ')


def method_table(models, link_prefix):
    """The markdown table of one method: one row per model.

    Args:
        models (list[dict]): the metafile's models.
        link_prefix (str): prefix that turns a repo-relative config path into a link from
            the page the table goes into.
    """
    metrics = metric_columns(models)
    meta_cols = metadata_columns(models)
    header = ['Model', 'Task', 'Dataset'] + metrics + meta_cols + ['Config', 'Weights']
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for m in models:
        values = {}
        for r in m.get('Results') or []:
            for k, v in r['Metrics'].items():
                values[k] = v
        meta = m.get('Metadata') or {}
        weights = m.get('Weights')
        row = ([f'`{m["Name"]}`', model_task(m), model_datasets(m)]
               + [values.get(k, '–') for k in metrics]
               + [format_metadata(k, meta[k]) if k in meta else '–' for k in meta_cols]
               + [f'[config]({link_prefix}{m["Config"]})',
                  f'[weights]({weights})' if weights else NOT_PUBLISHED])
        lines.append('| ' + ' | '.join(_cell(c) for c in row) + ' |')
    return '\n'.join(lines)


def readme_copies(repo=REPO, entries=None):
    """``{absolute path of configs/<method>/README.md: docs page name}`` for every method."""
    entries = load_metafiles(repo) if entries is None else entries
    out = {}
    for e in entries:
        readme = osp.join(repo, e['folder'], 'README.md')
        if osp.isfile(readme):
            out[osp.normpath(readme)] = f'{ZOO_DIR}/{osp.basename(e["folder"])}.md'
    return out


_LINK = re.compile(r'(!?\[[^\]\n]*\])\(([^)\s]+)\)')
_FENCE = re.compile(r'^\s*(```|~~~)')


def rewrite_links(text, src_dir, dst_dir, readmes, docs_dir=DOCS, move=False):
    """Re-point the relative markdown links of a page outside fenced code blocks.

    Args:
        text (str): markdown.
        src_dir (str): directory the links were written relative to.
        dst_dir (str): directory of the page the text goes into.
        readmes (dict): :func:`readme_copies`; links to those READMEs go to their copies.
        docs_dir (str): the Sphinx source directory.
        move (bool): re-point every relative link (the text moves from ``src_dir`` to
            ``dst_dir``); otherwise only links to the READMEs are changed.
    """
    def repl(match):
        label, target = match.groups()
        if re.match(r'^[a-z][a-z0-9+.-]*:', target, re.I) or target.startswith(('#', '/')):
            return match.group(0)
        path, _, anchor = target.partition('#')
        resolved = osp.normpath(osp.join(src_dir, path))
        if resolved in readmes:
            new = osp.relpath(osp.join(docs_dir, readmes[resolved]), dst_dir)
        elif move:
            new = osp.relpath(resolved, dst_dir)
        else:
            return match.group(0)
        return f'{label}({new}{"#" + anchor if anchor else ""})'

    out, in_fence = [], False
    for line in text.splitlines(keepends=True):
        if _FENCE.match(line):
            in_fence = not in_fence
            out.append(line)
        else:
            out.append(line if in_fence else _LINK.sub(repl, line))
    return ''.join(out)


def model_zoo_markdown(repo=REPO, entries=None, docs_dir=DOCS):
    """The text of ``model_zoo.md``."""
    entries = load_metafiles(repo) if entries is None else entries
    readmes = readme_copies(repo, entries)
    prefix = osp.relpath(repo, docs_dir).replace(os.sep, '/') + '/'
    total = sum(len(e['models']) for e in entries)
    parts = [
        '# Model zoo',
        '',
        '<!-- generated by docs/en/gen_model_zoo.py from model-index.yml; do not edit -->',
        '',
        f'{total} models in {len(entries)} metafiles (`model-index.yml`). The metrics are the '
        'reference results the metafiles record (the papers\' or the official code\'s published '
        'numbers, not results trained here); "–" where none was published. Parameters and FLOPs '
        'are as the metafiles give them (OpenMMLab counts FLOPs as multiply-adds). "Config" opens '
        'the config file; "Weights" is the published checkpoint, which loads with `load_from=` / '
        '`tools/test.py CONFIG CKPT` (ImageNet checkpoints through the backbone\'s `init_cfg`).',
        '',
        'Every config has the OpenMMLab name `{algorithm}_{backbone}_{NxB}-{schedule}_{dataset}-'
        '{crop}.py`; the synthetic-data siblings that train on a CPU in minutes are listed in each '
        'method\'s configs page.',
        '',
    ]
    toc = []
    for e in entries:
        folder = osp.basename(e['folder'])
        for coll in e['collections']:
            models = [m for m in e['models'] if m.get('In Collection') == coll['Name']]
            parts += [f'## {coll["Name"]}', '']
            paper = coll.get('Paper') or {}
            links = []
            if paper.get('URL'):
                links.append(f'paper: [{paper.get("Title", paper["URL"])}]({paper["URL"]})')
            readme = osp.normpath(osp.join(repo, coll.get('README', osp.join(e['folder'], 'README.md'))))
            if readme in readmes:
                links.append(f'configs and results: [{e["folder"]}]({readmes[readme]})')
            if osp.isfile(osp.join(docs_dir, f'{folder}.md')):
                links.append(f'design notes: [{folder}.md]({folder}.md)')
            links.append(f'metafile: `{e["metafile"]}`')
            parts += ['; '.join(links) + '.', '', method_table(models, prefix), '']
        own_readme = osp.normpath(osp.join(repo, e['folder'], 'README.md'))
        if own_readme in readmes:
            toc.append(readmes[own_readme][:-3])
    if toc:
        parts += ['```{toctree}', ':hidden:', ''] + toc + ['```', '']
    return '\n'.join(parts)


def _write_if_changed(path, text):
    """Write only when the content changes, so Sphinx does not re-read unchanged pages."""
    if osp.isfile(path):
        with open(path) as f:
            if f.read() == text:
                return
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)


def write_model_zoo(repo=REPO, docs_dir=DOCS):
    """Write ``model_zoo.md`` and the README copies into ``docs_dir``; return their paths."""
    entries = load_metafiles(repo)
    readmes = readme_copies(repo, entries)
    written = []
    path = osp.join(docs_dir, ZOO_PAGE)
    _write_if_changed(path, model_zoo_markdown(repo, entries, docs_dir))
    written.append(path)
    for readme, page in readmes.items():
        with open(readme) as f:
            text = f.read()
        dst = osp.join(docs_dir, page)
        text = rewrite_links(text, osp.dirname(readme), osp.dirname(dst), readmes, docs_dir,
                             move=True)
        note = (f'<!-- generated by docs/en/gen_model_zoo.py from '
                f'{osp.relpath(readme, repo)}; edit that file -->\n\n')
        _write_if_changed(dst, note + text)
        written.append(dst)
    return written


if __name__ == '__main__':
    for p in write_model_zoo():
        print(p)
