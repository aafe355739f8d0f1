"""Every command-line tool explains itself (issue 8, item 5).

* each Python tool under tools/ and demo/ (found by glob, so a new tool is checked too) has a
  module-level ``parse_args(argv)``, a description, and a ``--help`` that exits 0 with an
  Example section whose commands name the script itself and parse with its own parser (configs
  they name exist);
* the long tools take ``--no-progress``, and their bars go to stderr: stdout is the same with
  and without them (checked on make_synthetic_data.py);
* each shell tool prints a usage with an example on ``-h/--help`` (exit 0) and on missing
  arguments (exit != 0) without launching anything, and its example, run with stand-in
  ``python`` / ``srun``, launches a command line the Python tool's parser accepts.
"""
import functools
import glob
import importlib.util
import os
import os.path as osp
import re
import shlex
import stat
import subprocess

import pytest

from tests.conftest import REPO

PY_TOOLS = sorted(
    osp.relpath(p, REPO)
    for pattern in ('tools/**/*.py', 'demo/**/*.py')
    for p in glob.glob(osp.join(REPO, pattern), recursive=True)
    if not osp.basename(p).startswith('_'))  # __init__.py, private helpers
# tools/install/ holds the environment set-up scripts run by `make`: running them installs things
SH_TOOLS = sorted(
    osp.relpath(p, REPO) for p in glob.glob(osp.join(REPO, 'tools', '**', '*.sh'), recursive=True)
    if not osp.relpath(p, REPO).startswith('tools/install/'))
# the tools that run long enough to need a progress bar
LONG_TOOLS = {
    'tools/misc/make_synthetic_data.py', 'tools/analysis_tools/benchmark.py',
    'tools/analysis_tools/benchmark_clustr.py', 'tools/analysis_tools/benchmark_kmax.py',
    'tools/analysis_tools/benchmark_pacavit.py', 'tools/analysis_tools/benchmark_psvit.py',
    'tools/model_converters/pacavit2clusterseg.py', 'tools/model_converters/clustr2clusterseg.py',
    'tools/model_converters/kmax_d2_to_clusterseg.py', 'tools/search/psvit_search.py',
    'tools/analysis_tools/browse_dataset.py'}


def test_tools_are_found():
    assert {'tools/train.py', 'tools/test.py', 'demo/image_demo.py'} | LONG_TOOLS <= set(PY_TOOLS)
    assert {'tools/dist_train.sh', 'tools/dist_test.sh', 'tools/slurm_train.sh',
            'tools/slurm_test.sh', 'tools/misc/demo.sh'} <= set(SH_TOOLS)


@functools.lru_cache(maxsize=None)
def load_tool(path):
    """Import a tool file as a module (without running its ``main``)."""
    name = '_cli_' + re.sub(r'\W', '_', path[:-3])
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def clean_env(monkeypatch):
    # train.py / test.py set LOCAL_RANK when it is missing: keep that out of the other tests
    monkeypatch.setenv('LOCAL_RANK', '0')
    monkeypatch.setenv('COLUMNS', '100')  # argparse wraps help to the terminal width


def tool_help(path, capsys):
    module = load_tool(path)
    assert callable(getattr(module, 'parse_args', None)), f'{path} has no parse_args(argv)'
    with pytest.raises(SystemExit) as exc:
        module.parse_args(['--help'])
    assert exc.value.code in (0, None), f'{path} --help exited {exc.value.code}'
    return capsys.readouterr().out


def example_section(text):
    """The text after the first ``Example:`` / ``examples:`` header."""
    m = re.search(r'^[ \t]*examples?:', text, re.I | re.M)
    assert m, f'no Example section in:\n{text}'
    return text[m.end():]


def example_commands(text, launcher='python'):
    """``(env, command tokens)`` of every example line that starts with ``launcher``."""
    commands = []
    for line in example_section(text).replace('\\\n', ' ').splitlines():
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            continue
        env = {}
        while tokens and re.match(r'^[A-Z_][A-Z0-9_]*=', tokens[0]):
            key, value = tokens.pop(0).split('=', 1)
            env[key] = value
        if tokens and osp.basename(tokens[0]) == launcher:
            commands.append((env, tokens))
    return commands


def parse_with_tool(script, argv):
    try:
        return load_tool(script).parse_args(argv)
    except SystemExit as e:  # argparse error: make the failing command visible
        raise AssertionError(f'{script} rejects its example arguments {argv} (exit {e.code})')


def check_paths(argv):
    for arg in argv:
        value = arg.split('=', 1)[-1]
        if value.startswith('configs/'):
            assert osp.isfile(osp.join(REPO, value)), f'example names a missing config: {value}'


@pytest.mark.parametrize('path', PY_TOOLS)
def test_help_has_a_runnable_example(path, capsys, clean_env):
    out = tool_help(path, capsys)
    # a description: the paragraph after the usage lines is not straight away the argument list
    after_usage = out.split('\n\n', 1)[1].lstrip()
    assert not after_usage.startswith(('options:', 'positional arguments:')), f'{path}: no description'
    commands = example_commands(out)
    scripts = [tokens[1] for _, tokens in commands]
    assert path in scripts, f'the Example section of {path} has no `python {path} ...` command'
    for _, (python, script, *argv) in commands:
        assert osp.isfile(osp.join(REPO, script)), f'{path} example runs a missing script {script}'
        args = parse_with_tool(script, argv)
        check_paths(argv)
        if script == path and path in LONG_TOOLS:
            assert args.no_progress is False  # progress on by default ...
            assert parse_with_tool(script, argv + ['--no-progress']).no_progress is True  # ... and off
    if path in LONG_TOOLS:
        assert '--no-progress' in out


def test_bad_example_fails_the_check():
    """The checks above can fail: a wrong option or a missing config is caught."""
    with pytest.raises(AssertionError, match='rejects its example'):
        parse_with_tool('tools/analysis_tools/get_flops.py',
                        ['configs/pacavit/pacavit-tiny_8xb128-300e_in1k.py', '--no-such-option'])
    with pytest.raises(AssertionError, match='missing config'):
        check_paths(['--config', 'configs/pacavit/no_such_config.py'])
    with pytest.raises(AssertionError, match='no Example section'):
        example_section('usage: x.py [-h]\n\nDoes things.\n')


def test_synthetic_data_progress_on_stderr_only(tmp_path, capsys):
    """The bar (one per split) is drawn on stderr; --no-progress removes it, stdout is unchanged."""
    tool = load_tool('tools/misc/make_synthetic_data.py')
    argv = ['--task', 'seg', '--out', str(tmp_path / 'seg'), '--num-train', '3', '--num-val', '2',
            '--size', '32']
    tool.main(argv)
    shown = capsys.readouterr()
    tool.main(argv + ['--no-progress'])
    quiet = capsys.readouterr()
    # stderr is not a terminal here: plain lines, the last one of each split at its end
    assert 'seg/train (3 images): 3/3' in shown.err and 'seg/val (2 images): 2/2' in shown.err
    assert '3/3' not in shown.out and quiet.err == ''

    def strip_time(text):
        return re.sub(r'done in [\d.]+s', 'done in Xs', text)

    assert strip_time(shown.out) == strip_time(quiet.out) and 'Written:' in quiet.out
    assert sorted(os.listdir(tmp_path / 'seg' / 'images' / 'training')) != []


# ---------------------------------------------------------------------------- shell tools
@pytest.fixture
def fake_launchers(tmp_path):
    """Stand-in ``python`` / ``srun`` / ``torchrun`` that record their argv instead of running."""
    bin_dir, calls = tmp_path / 'bin', tmp_path / 'calls'
    bin_dir.mkdir()
    calls.mkdir()
    for name in ('python', 'python3', 'srun', 'torchrun'):
        exe = bin_dir / name
        exe.write_text('#!/usr/bin/env bash\n'
                       f'printf "%s\\0" "$@" > "$(mktemp {calls}/{name}.XXXXXX)"\n')
        exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
               PYTHON=str(bin_dir / 'python'))

    def recorded():
        """{call file: argv} of every launch so far."""
        return {f.name: f.read_text().split('\0')[:-1] for f in calls.iterdir()}

    return env, recorded


def run_sh(args, env):
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def required_args(usage_text, script):
    """The number of required placeholders (``CONFIG NPROC``) on the usage line."""
    line = next(ln for ln in usage_text.splitlines() if ln.startswith('usage:'))
    words = line.split(script, 1)[1].split()
    return sum(1 for w in words if re.fullmatch(r'[A-Z_]+', w))


@pytest.mark.parametrize('script', SH_TOOLS)
def test_shell_help_and_missing_arguments(script, fake_launchers):
    env, recorded = fake_launchers
    for flag in ('--help', '-h'):
        proc = run_sh(['bash', script, flag], env)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith('usage:') and f'bash {script}' in proc.stdout
        examples = [tokens[1] for _, tokens in example_commands(proc.stdout, 'bash')]
        assert examples and set(examples) == {script}, examples
    needed = required_args(proc.stdout, script)
    if needed:
        proc = run_sh(['bash', script], env)
        assert proc.returncode != 0 and 'usage:' in proc.stderr and 'Example:' in proc.stderr
        proc = run_sh(['bash', script] + ['x'] * (needed - 1), env)
        assert proc.returncode != 0 and 'usage:' in proc.stderr
    assert recorded() == {}, 'help or a missing argument launched something'


@pytest.mark.parametrize('script', SH_TOOLS)
def test_shell_example_launches_a_valid_command(script, fake_launchers, clean_env):
    """Run each usage example with stand-in launchers; the Python tool they start must accept
    the arguments it is given."""
    env, recorded = fake_launchers
    if script == 'tools/misc/gpu_check.sh':
        import torch
        if not torch.cuda.is_available():
            pytest.skip('gpu_check.sh checks a CUDA GPU: its example stops at once without one')
    usage = run_sh(['bash', script, '--help'], env).stdout
    examples = example_commands(usage, 'bash')
    for extra_env, (_, _, *argv) in examples:
        check_paths(argv)
    if any(osp.basename(a).startswith('python') for _, (_, _, *argv) in examples for a in argv):
        pytest.skip(f'{script} takes the interpreter as an argument: its example would really run')
    for extra_env, tokens in examples:
        before = recorded()
        proc = run_sh(tokens, dict(env, **extra_env))
        assert proc.returncode == 0, proc.stderr
        calls = [argv for name, argv in recorded().items() if name not in before]
        assert calls, f'{script} example launched nothing'
        for argv in calls:
            i = next(i for i, a in enumerate(argv) if a.endswith('.py'))
            tool = osp.relpath(osp.normpath(osp.join(REPO, argv[i])), REPO)
            assert tool in PY_TOOLS, tool
            parse_with_tool(tool, argv[i + 1:])
