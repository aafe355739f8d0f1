"""The user guide (docs/en, README): it builds with Sphinx without a warning, the generated model
zoo lists every model of every metafile, every command names a real script whose own argument
parser accepts it, every config path exists, and the config files and outputs shown are real."""
import argparse
import contextlib
import glob
import importlib.util
import inspect
import io
import os
import os.path as osp
import re
import shlex
import subprocess
import sys
from unittest import mock

import pytest
import yaml

from tests.conftest import PYTHON, REPO

DOCS = osp.join(REPO, 'docs', 'en')
GENERATED = ('model_zoo.md', )  # written by docs/en/gen_model_zoo.py at build time


def load_generator():
    spec = importlib.util.spec_from_file_location('gen_model_zoo_under_test',
                                                  osp.join(DOCS, 'gen_model_zoo.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def doc_pages():
    """Hand-written pages: docs/en/*.md, the README, and the configs READMEs (which the docs
    include as the model zoo's per-method pages)."""
    pages = sorted(p for p in glob.glob(osp.join(DOCS, '*.md'))
                   if osp.basename(p) not in GENERATED)
    pages += [osp.join(REPO, 'README.md')]
    pages += sorted(glob.glob(osp.join(REPO, 'configs', '*', 'README.md')))
    return pages


def rel(path):
    return osp.relpath(path, REPO)


# ----------------------------------------------------------------------------------------------
# (a) the Sphinx build

@pytest.fixture(scope='module')
def built_docs(tmp_path_factory):
    out = tmp_path_factory.mktemp('docs_html')
    proc = subprocess.run(
        [PYTHON, '-m', 'sphinx', '-W', '--keep-going', '-b', 'html', '-d', str(out / '.doctrees'),
         DOCS, str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    return proc, out


def test_docs_build_without_warnings(built_docs):
    proc, out = built_docs
    assert proc.returncode == 0, f'sphinx -W failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}'
    assert 'WARNING' not in proc.stderr, proc.stderr[-6000:]
    # every hand-written page is built (no orphan: -W would have failed on one outside a toctree)
    for page in glob.glob(osp.join(DOCS, '*.md')):
        name = osp.splitext(osp.basename(page))[0]
        assert (out / f'{name}.html').is_file(), f'{rel(page)} was not built'
    index = (out / 'index.html').read_text()
    for page in glob.glob(osp.join(DOCS, '*.md')):
        name = osp.splitext(osp.basename(page))[0]
        if name != 'index':
            assert f'href="{name}.html' in index, f'{name} is not in the index toctree'


def test_built_model_zoo_names_every_model(built_docs):
    proc, out = built_docs
    assert proc.returncode == 0
    html = (out / 'model_zoo.html').read_text()
    for model in independent_models():
        assert model['Name'] in html, model['Name']
    for folder in ('pacavit', 'clustr', 'psvit', 'kmax_deeplab'):
        assert (out / 'model_zoo' / f'{folder}.html').is_file(), folder


# ----------------------------------------------------------------------------------------------
# (b) the model zoo generated from the metafiles

def independent_models():
    """Every model of every metafile in model-index.yml, read here with yaml alone."""
    with open(osp.join(REPO, 'model-index.yml')) as f:
        metafiles = yaml.safe_load(f)['Import']
    models = []
    for metafile in metafiles:
        with open(osp.join(REPO, metafile)) as f:
            models += yaml.safe_load(f)['Models']
    return models


def table_rows(markdown):
    """{model name: [cells]} of every table row of the generated page."""
    rows = {}
    for line in markdown.splitlines():
        m = re.match(r'^\| `([^`]+)` \|(.*)\|$', line)
        if m:
            assert m.group(1) not in rows, f'{m.group(1)} is listed twice'
            rows[m.group(1)] = [c.strip() for c in m.group(2).split(' | ')]
    return rows


def test_model_zoo_lists_every_model_of_every_metafile(tmp_path):
    gen = load_generator()
    paths = gen.write_model_zoo(REPO, str(tmp_path))
    text = (tmp_path / 'model_zoo.md').read_text()
    rows = table_rows(text)
    models = independent_models()
    assert len(models) > 50
    assert len(rows) == len(models)
    assert set(rows) == {m['Name'] for m in models}
    for m in models:
        cells = rows[m['Name']]
        assert any(m['Config'] in c for c in cells), (m['Name'], cells)
        assert cells[-1] == (f'[weights]({m["Weights"]})' if m.get('Weights') else 'not published')
        for result in m.get('Results') or []:
            assert result['Task'] in cells[0] and result['Dataset'] in cells[1], m['Name']
            for value in result['Metrics'].values():
                assert str(value) in cells, (m['Name'], value, cells)
    # one section per collection, and the README copies exist
    assert text.count('\n## ') == sum(
        len(yaml.safe_load(open(osp.join(REPO, f)))['Collections'])
        for f in yaml.safe_load(open(osp.join(REPO, 'model-index.yml')))['Import'])
    assert len(paths) == 1 + len(glob.glob(osp.join(REPO, 'configs', '*', 'README.md')))


def test_model_zoo_table_counts_a_new_model(tmp_path):
    """The generator follows the metafiles: a model added to a metafile is a new row."""
    gen = load_generator()
    entries = gen.load_metafiles(REPO)
    before = len(table_rows(gen.model_zoo_markdown(REPO, entries, str(tmp_path))))
    extra = dict(entries[0]['models'][0], Name='added-model_8xb2-1x_coco')
    extra.pop('Weights', None)
    entries[0]['models'].append(extra)
    rows = table_rows(gen.model_zoo_markdown(REPO, entries, str(tmp_path)))
    assert len(rows) == before + 1 and rows['added-model_8xb2-1x_coco'][-1] == 'not published'


def test_readme_copies_point_back_to_the_repository(tmp_path):
    gen = load_generator()
    readmes = gen.readme_copies(REPO)
    src = osp.join(REPO, 'configs', 'pacavit')
    dst = osp.join(str(tmp_path), 'model_zoo')
    text = ('[cfg](pacavit-tiny_8xb128-300e_in1k.py) [doc](../../docs/en/pacavit.md) '
            '[kmax](../kmax_deeplab/README.md#speed) [web](https://x.org/a.md)\n'
            '```python\nx = a[0](b)\n```\n')
    out = gen.rewrite_links(text, src, dst, readmes, str(tmp_path), move=True)
    assert f'[cfg]({osp.relpath(osp.join(src, "pacavit-tiny_8xb128-300e_in1k.py"), dst)})' in out
    assert '[kmax](kmax_deeplab.md#speed)' in out and '[web](https://x.org/a.md)' in out
    assert 'x = a[0](b)' in out  # code is left alone


# ----------------------------------------------------------------------------------------------
# (c) commands, scripts and config paths in the pages

SHELL_LANGS = ('shell', 'bash', 'sh', 'console')
PYTHONS = ('python', 'python3', '.venv/bin/python', '$PY', '${PY}', '$(PY)')
ENV_ASSIGN = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*=')


def code_blocks(text):
    """(language, body, line number, the line before the fence) of every fenced block."""
    lines = text.splitlines()
    out, i = [], 0
    while i < len(lines):
        m = re.match(r'^(\s*)(```+|~~~+)\s*([\w{}-]*)', lines[i])
        if m:
            fence, lang, start = m.group(2), m.group(3), i
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith(fence):
                j += 1
            prev = lines[start - 1] if start else ''
            out.append((lang, '\n'.join(lines[start + 1:j]) + '\n', start + 1, prev))
            i = j + 1
        else:
            i += 1
    return out


def strip_code_blocks(text):
    return re.sub(r'^\s*(```+|~~~+).*?^\s*\1\s*$', '', text, flags=re.S | re.M)


def shell_commands(path):
    """(line, tokens) of every command in the page's shell blocks and inline code spans that
    starts with a python interpreter or `bash tools/`."""
    text = open(path).read()
    logical = []
    for lang, body, start, _ in code_blocks(text):
        if lang not in SHELL_LANGS:
            continue
        body = body.replace('\\\n', ' ')
        for k, line in enumerate(body.splitlines()):
            logical.append((start + k + 1, line))
    for span in re.findall(r'`([^`\n]+)`', strip_code_blocks(text)):
        words = span.split()
        while words and ENV_ASSIGN.match(words[0]):
            words = words[1:]
        if len(words) > 1 and (words[0] in PYTHONS or (words[0] == 'bash' and words[1].startswith('tools/'))):
            logical.append(('inline', span))
    for where, line in logical:
        # usage synopses: "[train.py options...]" describes, "[--opt X]" marks an option
        line = re.sub(r'\[(?!-)[^\[\]]*options[^\[\]]*\]', '', line)
        line = re.sub(r'(^|(?<=\s))\[+', '', line)
        line = re.sub(r'\]+(?=\s|$)', '', line)
        tokens = shlex.split(line, comments=True)
        tokens = [t[:-3] if t.endswith('...') and t != '...' else t for t in tokens if t != '...']
        while tokens and ENV_ASSIGN.match(tokens[0]):
            tokens = tokens[1:]
        if tokens:
            yield where, tokens


_TOOL_CACHE = {}


class _Parsed(Exception):

    def __init__(self, namespace):
        super().__init__()
        self.namespace = namespace


def parse_with_tool(script, argv):
    """Parse ``argv`` with the script's own parser: its ``parse_args(argv)`` when it has one,
    else the first ``ArgumentParser.parse_args`` call its ``main`` makes (stopped right after)."""
    if script not in _TOOL_CACHE:
        name = 'docs_checked_' + re.sub(r'\W', '_', script)
        spec = importlib.util.spec_from_file_location(name, osp.join(REPO, script))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _TOOL_CACHE[script] = module
    module = _TOOL_CACHE[script]
    err = io.StringIO()
    with mock.patch.dict(os.environ), contextlib.redirect_stderr(err):
        try:
            if hasattr(module, 'parse_args'):
                return module.parse_args(list(argv))
            original = argparse.ArgumentParser.parse_args

            def stop_after_parsing(self, args=None, namespace=None):
                raise _Parsed(original(self, args, namespace))

            with mock.patch.object(argparse.ArgumentParser, 'parse_args', stop_after_parsing), \
                    mock.patch.object(sys, 'argv', [script] + list(argv)):
                try:
                    if inspect.signature(module.main).parameters:
                        module.main(list(argv))
                    else:
                        module.main()
                except _Parsed as parsed:
                    return parsed.namespace
            raise AssertionError(f'{script}: main() returned without parsing arguments')
        except SystemExit as e:
            raise AssertionError(f'{script} rejects {argv}: {err.getvalue().strip()}') from e


# the shell scripts pass their arguments on to tools/train.py and tools/test.py
SHELL_SCRIPTS = {
    'tools/dist_train.sh': (2, lambda a, rest: ('tools/train.py', [a[0], '--launcher', 'pytorch'] + rest)),
    'tools/dist_test.sh': (3, lambda a, rest: ('tools/test.py', [a[0], a[1], '--launcher', 'pytorch'] + rest)),
    'tools/slurm_train.sh': (4, lambda a, rest: ('tools/train.py',
                                                 [a[2], f'--work-dir={a[3]}', '--launcher=slurm'] + rest)),
    'tools/slurm_test.sh': (4, lambda a, rest: ('tools/test.py', [a[2], a[3], '--launcher=slurm'] + rest)),
}


def check_command(tokens):
    """Raise AssertionError when a command names a missing script or is refused by its parser.
    Returns the (script, argv) it checked, or None for a command that is not a repository tool."""
    if tokens[0] in PYTHONS:
        if len(tokens) < 2 or tokens[1].startswith('-'):
            return None  # python -m ..., python - <<EOF
        script, argv = tokens[1], tokens[2:]
    elif tokens[0] == 'bash' and len(tokens) > 1 and tokens[1].startswith('tools/'):
        script, argv = tokens[1], tokens[2:]
        assert osp.isfile(osp.join(REPO, script)), f'{script} does not exist'
        if script not in SHELL_SCRIPTS:
            return script, argv
        npos, to_python = SHELL_SCRIPTS[script]
        assert len(argv) >= npos, f'{script} needs {npos} positional arguments: {argv}'
        script, argv = to_python(argv[:npos], argv[npos:])
    else:
        return None
    if not script.startswith(('tools/', 'demo/')):
        return None  # a user's own script in an example
    assert osp.isfile(osp.join(REPO, script)), f'{script} does not exist'
    args = parse_with_tool(script, argv)
    for value in vars(args).values():
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str) and v.startswith('configs/') and v.endswith('.py'):
                assert osp.isfile(osp.join(REPO, v)), f'config {v} does not exist'
    return script, argv


def all_commands():
    for page in doc_pages():
        for where, tokens in shell_commands(page):
            yield rel(page), where, tokens


def test_every_documented_command_parses():
    checked, failures = set(), []
    for page, where, tokens in all_commands():
        try:
            done = check_command(tokens)
        except AssertionError as e:
            failures.append(f'{page}:{where}: {" ".join(tokens)}\n    {e}')
            continue
        if done:
            checked.add(done[0])
    assert not failures, '\n'.join(failures)
    # the pages do document the main entry points
    for script in ('tools/train.py', 'tools/test.py', 'tools/misc/make_synthetic_data.py',
                   'tools/dist_train.sh', 'tools/dist_test.sh', 'tools/slurm_train.sh',
                   'tools/slurm_test.sh', 'demo/image_demo.py', 'demo/cluster_demo.py',
                   'tools/analysis_tools/benchmark.py', 'tools/analysis_tools/get_flops.py'):
        if script.endswith('.sh'):
            assert any(t[:2] == ['bash', script] for _, _, t in all_commands()), script
        else:
            assert script in checked, script


@pytest.mark.parametrize('tokens, message', [
    (['python', 'tools/train.py', 'configs/demo/segformer_mit-b0_1xb8-300it_synthetic-ade20k-128x128.py',
      '--no-such-option'], 'rejects'),
    (['python', 'tools/test.py', 'CONFIG'], 'rejects'),  # the checkpoint is missing
    (['python', 'tools/no_such_tool.py', 'x'], 'does not exist'),
    (['python', 'tools/train.py', 'configs/pacavit/no_such_config.py'], 'does not exist'),
    (['bash', 'tools/dist_train.sh', 'CONFIG', '2', '--ampp'], 'rejects'),
    (['bash', 'tools/slurm_test.sh', 'p', 'job', 'CONFIG'], 'positional'),
    (['python', 'tools/analysis_tools/get_flops.py', 'CONFIG', '--shape', '224'], 'rejects'),
])
def test_command_check_catches_bad_commands(tokens, message):
    """The check is not vacuous: wrong options, scripts, configs and arity are reported (also
    for a tool without a parse_args(argv) function, get_flops.py)."""
    with pytest.raises(AssertionError, match=message):
        check_command(tokens)


def test_synopsis_lines_are_parsed_as_commands(tmp_path):
    page = tmp_path / 'p.md'
    page.write_text('```shell\npython tools/train.py CONFIG [--resume [CKPT]] [--cfg-options KEY=VALUE ...]\n'
                    'GPUS=8 bash tools/slurm_train.sh P J CONFIG WORK_DIR [train.py options...]\n```\n'
                    'and `CLUSTERSEG_TRUST_CHECKPOINTS=1 python tools/test.py C K --trust-checkpoint`\n')
    commands = [t for _, t in shell_commands(str(page))]
    assert commands == [
        ['python', 'tools/train.py', 'CONFIG', '--resume', 'CKPT', '--cfg-options', 'KEY=VALUE'],
        ['bash', 'tools/slurm_train.sh', 'P', 'J', 'CONFIG', 'WORK_DIR'],
        ['python', 'tools/test.py', 'C', 'K', '--trust-checkpoint']]
    for tokens in commands:
        check_command(tokens)


CONFIG_PATH = re.compile(r'(?<![\w./-])(?:\.\./)*(configs/[\w./{},-]+?\.(?:py|md|yml))')
TOOL_PATH = re.compile(r'(?<![\w./-])((?:tools|demo)/[\w./{},-]*[\w}/])')


def expand_braces(path):
    """Shell brace expansion; a path with a placeholder (`{m}` of an f-string) is no path."""
    m = re.search(r'\{([^{}]*)\}', path)
    if not m:
        return [path]
    if ',' not in m.group(1):
        return []
    return [p for alt in m.group(1).split(',')
            for p in expand_braces(path[:m.start()] + alt + path[m.end():])]


def test_every_config_and_tool_path_in_the_docs_exists():
    missing, seen = [], 0
    for page in doc_pages():
        text = open(page).read()
        for path in CONFIG_PATH.findall(text):
            for p in expand_braces(path):
                seen += 1
                if not osp.isfile(osp.join(REPO, p)):
                    missing.append(f'{rel(page)}: {p}')
        for path in TOOL_PATH.findall(text):
            for p in expand_braces(path):
                if not osp.exists(osp.join(REPO, p)):
                    missing.append(f'{rel(page)}: {p}')
    assert seen > 50
    assert not missing, 'paths named in the docs that do not exist:\n' + '\n'.join(missing)


# ----------------------------------------------------------------------------------------------
# what the pages show is real

def python_blocks():
    for page in doc_pages():
        text = open(page).read()
        blocks = code_blocks(text)
        for i, (lang, body, line, prev) in enumerate(blocks):
            if lang == 'python':
                yield page, line, body, prev, blocks[i + 1] if i + 1 < len(blocks) else None


def test_config_files_shown_in_the_docs_are_the_real_files():
    """A python block whose first line is `# configs/....py` shows that file, verbatim."""
    shown = 0
    for page, line, body, _, _ in python_blocks():
        first, _, rest = body.partition('\n')
        m = re.match(r'^# (configs/\S+\.py)$', first)
        if m:
            shown += 1
            with open(osp.join(REPO, m.group(1))) as f:
                assert rest == f.read(), f'{rel(page)}:{line}: differs from {m.group(1)}'
    assert shown >= 5


def test_user_config_example_resolves(tmp_path):
    """The example ablation in config.md (`# my_configs/...py` inheriting a repository config)
    loads and changes only the clusters."""
    from mmengine.config import Config
    os.symlink(osp.join(REPO, 'configs'), tmp_path / 'configs')
    examples = 0
    for page, line, body, _, _ in python_blocks():
        first, _, rest = body.partition('\n')
        m = re.match(r'^# (my_configs/\S+\.py)$', first)
        if not m:
            continue
        examples += 1
        path = tmp_path / m.group(1)
        path.parent.mkdir(exist_ok=True)
        path.write_text(rest)
        cfg = Config.fromfile(str(path))
        base = Config.fromfile(str(tmp_path / re.search(r"_base_ = '\.\./(.+?)'", rest).group(1)))
        assert cfg.model.backbone.num_clusters == [64, 64, 64, 0]
        assert cfg.model.backbone.arch == base.model.backbone.arch
        assert cfg.train_cfg == base.train_cfg and cfg.train_dataloader == base.train_dataloader
    assert examples == 1


def test_runnable_blocks_print_what_the_docs_show():
    """A python block preceded by `<!-- docs-test: run -->` runs from the repository root and
    prints exactly the text block that follows it."""
    ran = 0
    for page, line, body, prev, following in python_blocks():
        if prev.strip() != '<!-- docs-test: run -->':
            continue
        ran += 1
        proc = subprocess.run([PYTHON, '-c', body], cwd=REPO, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, f'{rel(page)}:{line}:\n{proc.stderr[-3000:]}'
        assert following is not None and following[0] == 'text', f'{rel(page)}:{line}: no output block'
        assert proc.stdout == following[1], f'{rel(page)}:{line}: output differs:\n{proc.stdout}'
    assert ran >= 1


def test_benchmark_page_images_exist():
    text = open(osp.join(DOCS, 'benchmarks.md')).read()
    images = re.findall(r'!\[[^\]]*\]\(([^)]+)\)', text)
    assert len(images) >= 2
    for path in images:
        assert open(osp.join(DOCS, path), 'rb').read(4) == b'\x89PNG', path
    tables = re.findall(r'\[CSV\]\(([^)]+)\)', text)
    assert tables, 'the measured tables link their CSV'
    for path in tables + ['_static/benchmarks/benchmark.csv']:
        with open(osp.join(DOCS, path)) as f:
            assert f.readline().startswith('model,'), path


def test_docs_requirements_and_make_target():
    with open(osp.join(REPO, 'docs', 'requirements.txt')) as f:
        assert '-r ../requirements/docs.txt' in f.read()
    with open(osp.join(REPO, 'requirements', 'docs.txt')) as f:
        reqs = f.read()
    assert re.search(r'^sphinx==', reqs, re.M) and re.search(r'^myst-parser==', reqs, re.M)
    with open(osp.join(REPO, 'Makefile')) as f:
        makefile = f.read()
    assert re.search(r'^docs: \$\(STAMP\)\n\t\$\(PY\) -m sphinx -W .*docs/en ', makefile, re.M)
    assert 'requirements/docs.txt' in makefile.split('$(STAMP):')[1].split('\n')[0]
    with open(osp.join(REPO, 'tools', 'install', 'setup_env.sh')) as f:
        assert '-r requirements/docs.txt' in f.read()
