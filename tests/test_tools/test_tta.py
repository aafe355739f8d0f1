"""Test-time augmentation: the ADE20K configs' tta_pipeline / tta_model, and tools/test.py --tta
end to end on the synthetic set (a randomly initialised checkpoint saved here)."""
import glob
import importlib.util
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from tests.conftest import REPO, data_options

PACAHEAD = 'configs/pacavit/pacahead_pacavit-tiny_1xb4-300it_synthetic-ade20k-128x128.py'
KMAX_SEG = 'configs/kmax_deeplab/kmax-seg_r18-tiny_1xb4-300it_synthetic-ade20k-128x128.py'
RATIOS = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]


def _ade20k_configs():
    out = []
    for path in sorted(glob.glob(osp.join(REPO, 'configs', '*', '*ade20k*.py'))):
        if '_base_' not in path:
            out.append(osp.relpath(path, REPO))
    return out


def _load_test_tool():
    spec = importlib.util.spec_from_file_location('clusterseg_test_tool', osp.join(REPO, 'tools/test.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tta_branches(cfg):
    load, tta = cfg.tta_pipeline
    assert load['type'] == 'LoadImageFromFile' and tta['type'] == 'TestTimeAug'
    return tta['transforms']


@pytest.mark.parametrize('config', _ade20k_configs())
def test_every_ade20k_config_has_tta(config):
    """Multi-scale (the papers' 6 ratios of the single-scale test size) x flip; kMaX, at its
    fixed input size, flips only. Labels are reduced as in the test pipeline."""
    cfg = Config.fromfile(osp.join(REPO, config))
    assert cfg.tta_model.type == 'SegTTAModel'
    resize, flip, annotations, pack = _tta_branches(cfg)
    assert [f['prob'] for f in flip] == [0., 1.] and pack == [dict(type='PackSegInputs')]
    assert annotations == [dict(type='LoadAnnotations', reduce_zero_label=True)]
    test_scale = tuple(cfg.test_dataloader.dataset.pipeline[1]['scale'])
    scales = [tuple(r['scale']) for r in resize]
    if 'kmax' in config:
        assert scales == [test_scale] == [tuple(cfg.model.decode_head.input_size)]
    else:
        assert scales == [(int(test_scale[0] * r), int(test_scale[1] * r)) for r in RATIOS]
        assert test_scale in scales  # ratio 1.0 is the single-scale test
        if 'synthetic' not in config:
            assert test_scale == (2048, 512)


def test_tta_pipeline_gives_twelve_views(synthetic_root):
    """The synthetic base's pipeline on one image: 6 sizes x 2 flips, each with its labels."""
    from mmengine.registry import init_default_scope
    from mmseg.registry import TRANSFORMS

    import clusterseg  # noqa: F401
    init_default_scope('mmseg')
    cfg = Config.fromfile(osp.join(REPO, PACAHEAD))
    pipeline = [TRANSFORMS.build(t) for t in cfg.tta_pipeline]
    img = sorted(glob.glob(str(synthetic_root / 'ade' / 'images' / 'validation' / '*')))[0]
    seg = img.replace('images', 'annotations').rsplit('.', 1)[0] + '.png'
    results = dict(img_path=img, seg_map_path=seg, reduce_zero_label=True, seg_fields=[], label_map=None)
    for t in pipeline:
        results = t(results)
    samples = results['data_samples']
    assert len(samples) == 12
    shapes = {s.img_shape for s in samples}
    assert len(shapes) == 6 and (128, 128) in shapes  # 64 px images -> 32 ... 224 px
    assert sorted(s.flip for s in samples) == [False] * 6 + [True] * 6
    assert all(s.gt_sem_seg.data.shape[1:] == s.ori_shape for s in samples)


def test_tta_refused_where_it_cannot_apply():
    tool = _load_test_tool()
    cfg = Config.fromfile(osp.join(REPO, KMAX_SEG))
    cfg.tta_pipeline = Config.fromfile(osp.join(REPO, PACAHEAD)).tta_pipeline  # multi-scale
    with pytest.raises(SystemExit, match=r'fixed input size \(128, 128\).*cannot apply'):
        tool.use_tta(cfg, KMAX_SEG)
    cls = 'configs/pacavit/pacavit-tiny_1xb32-10e_synthetic-imagenet-64px.py'
    with pytest.raises(SystemExit, match='has no tta_'):
        tool.use_tta(Config.fromfile(osp.join(REPO, cls)), cls)


def _random_checkpoint(config, path):
    from clusterseg.apis import get_model
    torch.manual_seed(0)
    model = get_model(osp.join(REPO, config))
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)


@pytest.mark.parametrize('config', [PACAHEAD, KMAX_SEG], ids=['pacahead', 'kmax-seg'])
def test_test_tool_tta_end_to_end(config, synthetic_root, tmp_path, monkeypatch):
    """tools/test.py --tta: SegTTAModel merges every view of every image; metrics written."""
    from mmseg.models import SegTTAModel
    ckpt = str(tmp_path / 'random.pth')
    _random_checkpoint(config, ckpt)
    merged = []
    merge_preds = SegTTAModel.merge_preds

    def counting_merge(self, data_samples_list):
        merged.extend([(len(views), {v.img_shape for v in views}, {v.flip for v in views})
                       for views in data_samples_list])
        return merge_preds(self, data_samples_list)

    monkeypatch.setattr(SegTTAModel, 'merge_preds', counting_merge)
    opts = data_options('seg', synthetic_root / 'ade') + ['test_dataloader.dataset.indices=2']
    if config == PACAHEAD:  # the views of the 64 px set at a quarter of the size: a faster run
        opts += [f'tta_pipeline.1.transforms.0.{i}.scale=({int(256 * r)},{int(64 * r)})'
                 for i, r in enumerate(RATIOS)]
    work = tmp_path / 'work'
    metrics = _load_test_tool().main([osp.join(REPO, config), ckpt, '--tta', '--work-dir', str(work),
                                      '--cfg-options'] + opts)
    assert len(merged) == 2  # the first two images of the validation set
    views = 12 if config == PACAHEAD else 2
    for count, shapes, flips in merged:
        assert count == views and flips == {False, True}
        assert len(shapes) == views // 2
    written = json.load(open(work / 'test_metrics.json'))
    assert 'mIoU' in written and written['mIoU'] == pytest.approx(float(metrics['mIoU']))
