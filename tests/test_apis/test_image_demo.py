"""demo/image_demo.py draws the prediction of any task."""
import importlib.util
import os.path as osp

import pytest

from tests.conftest import REPO, run_tool
from tests.test_apis.conftest import config_path


def load_demo(name):
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO, 'demo', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_help_has_example():
    out = run_tool(['demo/image_demo.py', '--help']).stdout
    assert 'example:' in out and '--out-file' in out


@pytest.mark.parametrize('task', ['seg', 'det', 'cls'])
def test_image_demo_writes_visualisation(inference_files, tmp_path, task, capsys):
    import mmcv
    img, ckpts = inference_files
    out_file = tmp_path / 'out' / 'vis.png'
    load_demo('image_demo').main([img, config_path(task), ckpts[task], '--out-file', str(out_file)])
    assert f'{task} prediction drawn' in capsys.readouterr().out
    drawn, orig = mmcv.imread(str(out_file)), mmcv.imread(img)
    assert drawn.shape[2] == 3 and drawn.shape[:2] >= orig.shape[:2]
    if drawn.shape == orig.shape:  # seg/det draw over the image itself
        assert (drawn != orig).any()


def test_image_demo_missing_image(tmp_path):
    with pytest.raises(SystemExit, match='image not found'):
        load_demo('image_demo').main(['nope.png', config_path('seg'), 'x.pth',
                                      '--out-file', str(tmp_path / 'o.png')])
