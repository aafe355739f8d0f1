"""A run's config is checked before its first iteration, naming the config key (issue 8, item 4).

``tools/train.py`` calls ``clusterseg.engine.validate`` between reading the config and building
the runner: a misspelt hook argument, an unknown top-level ``--cfg-options`` key, a value of the
wrong type and a head whose ``num_classes`` differs from its dataset's stop the run at once.
"""
import importlib.util
import os
import os.path as osp

import pytest

from clusterseg.engine import ConfigKeyError, prepare_config
from clusterseg.engine.validate import ConfigValueError, NumClassesError
from tests.conftest import REPO, data_options, run_tool, small_seg_options

SEG = 'configs/demo/segformer_mit-b0_1xb8-300it_synthetic-ade20k-128x128.py'
DET = 'configs/demo/mask-rcnn_r18-w16_fpn_1xb4-12e_synthetic-coco-128x128.py'
PACA = 'configs/pacavit/pacahead_pacavit-tiny_1xb4-300it_synthetic-ade20k-128x128.py'
CLS = 'configs/demo/resnet18-w16_1xb32-10e_synthetic-imagenet-64px.py'


def load_tool(path):
    spec = importlib.util.spec_from_file_location(osp.basename(path)[:-3] + '_tool',
                                                  osp.join(REPO, path))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def _train_cfg(config, root, options, tmp_path, flags=()):
    """``tools/train.py``'s own config preparation (everything before the runner is built)."""
    tool = load_tool('tools/train.py')
    task = {DET: 'det', CLS: 'cls'}.get(config, 'seg')
    args = tool.parse_args([config, *flags, '--work-dir', str(tmp_path), '--cfg-options'] +
                           data_options(task, root) + list(options))
    return prepare_config(args, 'train')


def test_misspelt_hook_argument_stops_before_training(synthetic_root, tmp_path):
    work = tmp_path / 'work'
    proc = run_tool(['tools/train.py', SEG, '--work-dir', str(work), '--cfg-options',
                     'train_cfg.max_iters=2', 'default_hooks.checkpoint.intervall=1'] +
                    data_options('seg', synthetic_root / 'ade') + small_seg_options(64),
                    check=False)
    assert proc.returncode != 0
    err = proc.stderr
    assert 'ConfigKeyError: unknown config key default_hooks.checkpoint.intervall' in err, err[-3000:]
    assert "CheckpointHook takes no argument 'intervall'. Did you mean 'interval'" in err
    # stopped before the runner was built: not one iteration ran
    assert 'Iter(train)' not in proc.stdout + err
    assert not os.path.exists(work) or not any(f.endswith('.pth') for f in os.listdir(work))


def test_unknown_top_level_option_names_the_closest_key(synthetic_root, tmp_path):
    with pytest.raises(ConfigKeyError) as e:
        _train_cfg(SEG, synthetic_root / 'ade', ['trian_cfg.max_iters=2'], tmp_path)
    msg = str(e.value)
    assert "unknown top-level config key 'trian_cfg'" in msg and "Did you mean 'train_cfg'" in msg


@pytest.mark.parametrize('config,option,expected', [
    (SEG, 'train_cfg.max_iters=two', "IterBasedTrainLoop expects int for 'max_iters'"),
    (SEG, 'optim_wrapper.optimizer.lr=abc', "AdamW expects float"),
    (SEG, 'param_scheduler.1.end=end', "PolyLR expects int for 'end'"),
    (SEG, 'train_dataloader.batch_size=eight', 'expected int'),
    (PACA, 'model.backbone.num_clusters=100', "PaCaViT expects list[int] | None for 'num_clusters'"),
])
def test_bad_value_type_names_key_and_expected_type(config, option, expected, synthetic_root,
                                                    tmp_path):
    with pytest.raises(ConfigValueError) as e:
        _train_cfg(config, synthetic_root / 'ade', [option], tmp_path)
    key, value = option.split('=')
    msg = str(e.value)
    assert f'config key {key} = ' in msg and value in msg and expected in msg, msg


@pytest.mark.parametrize('config,option,numbers', [
    (SEG, 'model.decode_head.num_classes=7', ('model.decode_head.num_classes = 7', 'has 8 classes')),
    (DET, 'model.roi_head.bbox_head.num_classes=4',
     ('model.roi_head.bbox_head.num_classes = 4', 'has 5 classes')),
])
def test_head_num_classes_must_match_the_dataset(config, option, numbers, synthetic_root, tmp_path):
    root = synthetic_root / ('coco' if config == DET else 'ade')
    with pytest.raises(NumClassesError) as e:
        _train_cfg(config, root, [option], tmp_path)
    msg = str(e.value)
    assert all(n in msg for n in numbers), msg


def test_valid_configs_pass(synthetic_root, tmp_path):
    for config, root in ((SEG, 'ade'), (DET, 'coco'), (PACA, 'ade')):
        cfg = _train_cfg(config, synthetic_root / root, [], tmp_path)
        assert cfg.model is not None


def test_scheduler_emptied_by_a_short_run_names_the_key(synthetic_root, tmp_path):
    """The cls recipe's cosine schedule starts at epoch 1 and ends with the run: a 1-epoch run
    leaves it nothing (mmengine: "end should be larger than begin", no key named)."""
    with pytest.raises(ConfigValueError) as e:
        _train_cfg(CLS, synthetic_root / 'imagenet', ['train_cfg.max_epochs=1'], tmp_path)
    msg = str(e.value)
    assert 'param_scheduler.1 (CosineAnnealingLR) would run from step 1 to 1' in msg
    assert 'train_cfg.max_epochs' in msg
