"""The commands in docs/en/inference.md and docs/en/benchmarks.md name real scripts, configs and
options (parsed by the tools' own argument parsers), and the plots the benchmark page shows exist."""
import os.path as osp
import re
import shlex

import pytest

from tests.conftest import REPO
from tests.test_apis.test_image_demo import load_demo


def shell_commands(page):
    text = open(osp.join(REPO, 'docs/en', page)).read()
    for block in re.findall(r'```shell\n(.*?)```', text, re.S):
        block = block.replace('\\\n', ' ')
        for line in block.splitlines():
            line = line.split('#')[0].strip()
            if line.startswith('python '):
                # [--opt x] marks optional arguments in the docs
                yield shlex.split(re.sub(r'[\[\]]', '', line))[1:]


@pytest.mark.parametrize('page', ['inference.md', 'benchmarks.md'])
def test_doc_commands_parse(page):
    commands = list(shell_commands(page))
    assert commands
    for script, *argv in commands:
        assert osp.isfile(osp.join(REPO, script)), script
        name = osp.splitext(osp.basename(script))[0]
        if script.startswith('demo/'):
            module = load_demo(name)
        else:
            import importlib.util
            spec = importlib.util.spec_from_file_location(name, osp.join(REPO, script))
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        args = module.parse_args(argv)
        for config in getattr(args, 'configs', []):
            if not config.startswith('.venv/'):
                assert osp.isfile(osp.join(REPO, config)), config


def test_benchmark_page_images_exist():
    text = open(osp.join(REPO, 'docs/en/benchmarks.md')).read()
    images = re.findall(r'!\[[^\]]*\]\(([^)]+)\)', text)
    assert len(images) == 2
    for path in images:
        assert open(osp.join(REPO, 'docs/en', path), 'rb').read(4) == b'\x89PNG'
    assert osp.isfile(osp.join(REPO, 'docs/en/_static/benchmarks/benchmark.csv'))
