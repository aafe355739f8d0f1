"""Bad input gives an error that names the culprit (issue 7, item 3).

Unit tests for the checking transforms and the config-key explanation, plus end-to-end runs of
``tools/train.py`` showing they are wired in (``clusterseg.engine.add_input_checks``).
"""
import os
import os.path as osp
import shutil

import cv2
import mmcv
import numpy as np
import pytest
from mmengine.config import Config

from clusterseg.datasets.transforms import (CheckSegLabels, CorruptImageError, LoadImageFromFile,
                                            SegLabelError)
from clusterseg.engine import add_input_checks, explain_bad_config_key
from tests.conftest import data_options, run_tool, small_seg_options

SEG_DEMO = 'configs/demo/segformer_mit-b0_1xb8-300it_synthetic-ade20k-128x128.py'


def _image_files(tmp_path):
    img = (np.arange(48 * 64 * 3) % 251).astype(np.uint8).reshape(48, 64, 3)
    jpg = cv2.imencode('.jpg', img)[1].tobytes()
    png = cv2.imencode('.png', img)[1].tobytes()
    files = {'good.jpg': jpg, 'good.png': png, 'truncated.jpg': jpg[:len(jpg) // 2],
             'truncated.png': png[:len(png) // 2], 'garbage.jpg': b'not an image at all' * 10,
             'empty.png': b''}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return files


def test_corrupt_or_truncated_image_names_the_file(tmp_path):
    files = _image_files(tmp_path)
    load = LoadImageFromFile()
    for good in ('good.jpg', 'good.png'):
        out = load(dict(img_path=str(tmp_path / good)))
        assert out['img'].shape == (48, 64, 3)
        # same pixels as mmcv's loader: valid runs are unchanged
        ref = mmcv.imfrombytes(files[good])
        assert np.array_equal(out['img'], ref)
    for bad, what in (('truncated.jpg', 'truncated JPEG'), ('truncated.png', 'truncated PNG'),
                      ('garbage.jpg', 'cannot decode'), ('empty.png', 'empty image file')):
        path = str(tmp_path / bad)
        with pytest.raises(CorruptImageError) as e:
            load(dict(img_path=path))
        assert path in str(e.value) and what in str(e.value), str(e.value)
    with pytest.raises(FileNotFoundError, match='missing.jpg'):
        load(dict(img_path=str(tmp_path / 'missing.jpg')))
    # ignore_empty keeps mmcv's meaning: skip instead of failing
    assert LoadImageFromFile(ignore_empty=True)(dict(img_path=str(tmp_path / 'garbage.jpg'))) is None


def test_seg_label_beyond_num_classes_names_file_and_value(tmp_path):
    from mmseg.datasets import BaseSegDataset
    os.makedirs(tmp_path / 'img')
    os.makedirs(tmp_path / 'ann')
    img = np.zeros((16, 16, 3), np.uint8)
    for i, top in enumerate((3, 12)):
        cv2.imwrite(str(tmp_path / 'img' / f'{i}.jpg'), img)
        ann = np.full((16, 16), 1, np.uint8)
        ann[0, 0], ann[1, 1], ann[2, 2] = top, 255, 0
        cv2.imwrite(str(tmp_path / 'ann' / f'{i}.png'), ann)
    ds = BaseSegDataset(
        data_root=str(tmp_path), data_prefix=dict(img_path='img', seg_map_path='ann'),
        img_suffix='.jpg', seg_map_suffix='.png', metainfo=dict(classes=[f'c{i}' for i in range(4)]),
        pipeline=[dict(type='mmseg.LoadAnnotations'), CheckSegLabels(num_classes=4)])
    by_name = {osp.basename(ds.get_data_info(i)['seg_map_path']): i for i in range(len(ds))}
    assert ds[by_name['0.png']]['gt_seg_map'].max() == 255  # 0..3 and 255 pass
    with pytest.raises(SegLabelError) as e:
        ds[by_name['1.png']]
    msg = str(e.value)
    assert str(tmp_path / 'ann' / '1.png') in msg and 'value(s) 12' in msg and 'num_classes=4' in msg


def test_input_checks_are_wired_into_pipelines():
    cfg = Config.fromfile(SEG_DEMO)
    add_input_checks(cfg)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        types = [t['type'] for t in cfg[key].dataset.pipeline]
        assert types[0] == 'clusterseg.LoadImageFromFile', types
        assert types[types.index('clusterseg.LoadSegAnnotations') + 1] == 'clusterseg.CheckSegLabels'
    check = cfg.train_dataloader.dataset.pipeline[2]
    assert check.num_classes == cfg.model.decode_head.num_classes == 8
    assert any(h['type'] == 'clusterseg.DatasetCheckHook' for h in cfg.custom_hooks)
    n = len(cfg.train_dataloader.dataset.pipeline)
    assert add_input_checks(cfg) == 0  # idempotent
    assert sum(h['type'] == 'clusterseg.DatasetCheckHook' for h in cfg.custom_hooks) == 1
    assert len(cfg.train_dataloader.dataset.pipeline) == n


def _seg_run(root, work, extra=()):
    return run_tool(['tools/train.py', SEG_DEMO, '--work-dir', str(work), '--cfg-options',
                     'train_cfg.max_iters=2', 'train_cfg.val_interval=1000',
                     'default_hooks.checkpoint.interval=1000', 'train_dataloader.batch_size=8']
                    + data_options('seg', root) + small_seg_options(64) + list(extra), check=False)


def test_train_with_truncated_image_names_the_file(synthetic_root, tmp_path):
    root = tmp_path / 'ade'
    shutil.copytree(synthetic_root / 'ade', root)
    victim = sorted((root / 'images' / 'training').iterdir())[5]
    data = victim.read_bytes()
    victim.write_bytes(data[:len(data) // 3])
    proc = _seg_run(root, tmp_path / 'work')
    assert proc.returncode != 0
    assert 'CorruptImageError' in proc.stderr and str(victim) in proc.stderr, proc.stderr[-3000:]


def test_train_with_empty_dataset_names_the_data_root(tmp_path):
    root = tmp_path / 'empty_ade'
    for sub in ('images/training', 'images/validation', 'annotations/training',
                'annotations/validation'):
        os.makedirs(root / sub)
    proc = _seg_run(root, tmp_path / 'work')
    assert proc.returncode != 0
    err = proc.stderr
    assert 'EmptyDatasetError: dataset ADE20KDataset(' in err and 'is empty' in err, err[-3000:]
    assert f"data_root='{root}'" in err


def test_empty_dataset_hook_when_not_serialized(tmp_path):
    """serialize_data=False skips the build-time check; the hook stops the run before it starts."""
    from types import SimpleNamespace

    from mmengine.dataset import BaseDataset
    from mmengine.runner import IterBasedTrainLoop

    from clusterseg.engine import DatasetCheckHook, EmptyDatasetError

    class Empty(BaseDataset):
        def load_data_list(self):
            return []

    ds = Empty(data_root=str(tmp_path), ann_file='ann.json', serialize_data=False, lazy_init=False)
    loop = IterBasedTrainLoop.__new__(IterBasedTrainLoop)
    loop.dataloader = SimpleNamespace(dataset=ds)
    runner = SimpleNamespace(_train_loop=loop, _val_loop=None, _test_loop=None)
    with pytest.raises(EmptyDatasetError, match=r"train dataset is empty: Empty\(data_root="):
        DatasetCheckHook().before_run(runner)


def test_misspelt_config_key_names_key_module_and_suggestion(synthetic_root, tmp_path):
    config = 'configs/pacavit/pacahead_pacavit-tiny_1xb4-300it_synthetic-ade20k-128x128.py'
    proc = run_tool(['tools/train.py', config, '--work-dir', str(tmp_path), '--cfg-options',
                     'model.backbone.num_clustres=[4,4,4,0]'] +
                    data_options('seg', synthetic_root / 'ade'), check=False)
    assert proc.returncode != 0
    assert ("ConfigKeyError: unknown config key 'num_clustres' for module clusterseg.PaCaViT"
            in proc.stderr), proc.stderr[-3000:]
    assert "Did you mean 'num_clusters'?" in proc.stderr and 'pacavit.py' in proc.stderr


def test_explain_bad_config_key_passes_other_errors_through():
    assert explain_bad_config_key(TypeError('unsupported operand')) is None
    err = TypeError("class `EncoderDecoder` in mmseg/x.py: class `PaCaViT` in y.py: "
                    "PaCaViT.__init__() got an unexpected keyword argument 'arhc'")
    msg = str(explain_bad_config_key(err))
    assert "'arhc'" in msg and 'clusterseg.PaCaViT' in msg and "Did you mean 'arch'?" in msg


def test_input_size_the_model_cannot_take_names_the_sizes():
    """The PSViT supernet has fixed-size position embeddings: other sizes say which size works.
    (ClusTR: tests/test_models/test_backbones/test_clustr.py::test_bad_arch_and_bad_sizes;
    kMaX: tests/test_models/test_heads/test_kmax_head.py.)"""
    import torch

    from clusterseg.search import PSViTSearchSpace, PSViTSupernet
    net = PSViTSupernet([8, 16, 24], [1, 2, 3], 5, num_classes=4, space=PSViTSearchSpace(5, 3),
                        img_size=32, patch_size=4).eval()
    arch = ((0, 2), (False, ) * 5)
    assert net(torch.randn(1, 3, 32, 32), arch).shape == (1, 4)
    with pytest.raises(ValueError) as e:
        net(torch.randn(1, 3, 48, 40), arch)
    msg = str(e.value)
    assert 'built for 32x32 inputs' in msg and '(1, 3, 48, 40)' in msg and '12x10 tokens' in msg
