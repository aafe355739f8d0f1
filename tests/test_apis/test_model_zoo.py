"""Models by name: clusterseg.apis.list_models / get_model over model-index.yml, and the stock
inferencers given a name. Nothing here reaches the network: downloads are replaced by a
function that raises as an offline machine does."""
import os.path as osp
import time
import urllib.error

import numpy as np
import pytest
import torch
import yaml

from clusterseg.utils.state_dict import PARTIAL_ENV, CheckpointMismatchError
from tests.conftest import REPO
from tests.official_layouts import clustr_layout, pacavit_layout, random_state
from tests.test_apis.conftest import fresh_scope  # noqa: F401 (fixture)

SEG = 'pacahead_pacavit-tiny_8xb2-160k_ade20k-512x512'
CLS = 'pacavit-tiny_8xb128-300e_in1k'
DET = 'mask-rcnn_pacavit-tiny_fpn_ms-1x_coco'
NO_WEIGHTS = 'psvit-tiny_8xb128-300e_in1k'


def _metafile_models():
    with open(osp.join(REPO, 'model-index.yml')) as f:
        metafiles = yaml.safe_load(f)['Import']
    return [m for p in metafiles for m in yaml.safe_load(open(osp.join(REPO, p)))['Models']]


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No download reaches the network (an empty hub cache, and the download raises as offline);
    no partial-load opt-in from the environment."""
    def no_network(url, dst, *args, **kwargs):
        raise urllib.error.URLError(OSError(101, 'Network is unreachable'))

    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.setattr(torch.hub, 'download_url_to_file', no_network)
    monkeypatch.delenv(PARTIAL_ENV, raising=False)


@pytest.fixture(scope='module')
def cls_checkpoint(tmp_path_factory):
    """A PaCa-ViT-tiny classifier in our layout, and its model."""
    from clusterseg.apis import get_model
    torch.manual_seed(0)
    model = get_model(CLS)
    path = str(tmp_path_factory.mktemp('zoo') / 'pacavit-tiny_ours.pth')
    classes = tuple(f'class {i}' for i in range(1000))
    torch.save({'state_dict': model.state_dict(), 'meta': {'dataset_meta': {'classes': classes}}}, path)
    return path, model


def test_list_models():
    from clusterseg.apis import list_models
    names = [m['Name'] for m in _metafile_models()]
    assert list_models() == sorted(names)
    assert list_models('pacahead_pacavit-tiny') == [SEG]
    assert set(list_models('*_ade20k')) == {n for n in names if '_ade20k' in n}
    assert list_models('PACAHEAD*TINY') == sorted(n for n in names if n.startswith('pacahead') and 'tiny' in n)
    assert 'pacavit-small-mlp_8xb128-300e_in1k' not in list_models('pacavit-small', exclude_patterns=['*mlp'])
    panoptic = list_models(task='Panoptic Segmentation')
    assert panoptic and all(n.startswith('kmax') for n in panoptic)
    assert NO_WEIGHTS in list_models(task='null') and CLS not in list_models(task='null')
    assert list_models('no-such-model') == []


def test_get_model_builds_every_model_in_the_index(monkeypatch):
    """Every metafile entry builds into its library's model, in eval mode, with its config, and
    without downloading anything (the configs' ImageNet init_cfg entries are dropped)."""
    from mmengine.model import BaseModel
    from mmengine.runner.checkpoint import CheckpointLoader

    from clusterseg.apis import get_model
    from clusterseg.apis.model_zoo import skip_random_init

    def refuse(*args, **kwargs):
        raise AssertionError('building a model read a checkpoint')

    from clusterseg.engine import install
    install()  # (get_model installs it: before the monkeypatch, so that undoing it keeps it)
    monkeypatch.setattr(CheckpointLoader, 'load_checkpoint', refuse)
    models = _metafile_models()
    start = time.time()
    for entry in models:
        with skip_random_init():  # the tensors' values do not matter here: 2x faster on kMaX
            model = get_model(entry['Name'])
        assert isinstance(model, BaseModel) and not model.training, entry['Name']
        assert model.cfg.filename == osp.join(REPO, entry['Config'])
        assert 'Pretrained' not in str(model.cfg.model), entry['Name']
        assert model.dataset_meta.get('classes'), entry['Name']
        n = sum(p.numel() for p in model.parameters())
        assert n > 1e6, entry['Name']
        del model
    print(f'{len(models)} models built in {time.time() - start:.1f}s')


def test_round_trip_in_our_layout(cls_checkpoint):
    from clusterseg.apis import get_model
    path, model = cls_checkpoint
    loaded = get_model(CLS, pretrained=path)
    own = model.state_dict()
    assert all(torch.equal(v, own[k]) for k, v in loaded.state_dict().items())
    assert loaded.dataset_meta['classes'][1] == 'class 1'  # the checkpoint's, over the config's
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.extract_feat(x), model.extract_feat(x))


def test_official_timm_layout_is_converted(tmp_path):
    """The released PaCa-ViT / ClusTR ImageNet weights: raw timm keys (written from the reference
    code, tests/official_layouts.py), converted on the fly and loaded strictly."""
    from clusterseg.apis import get_model
    for name, layout in ((CLS, pacavit_layout('tiny')), ('clustr-tiny_8xb128-300e_in1k', clustr_layout('tiny'))):
        state = random_state(layout)
        path = str(tmp_path / f'{name}_official.pth')
        torch.save(state, path)
        model = get_model(name, pretrained=path)
        own = model.state_dict()
        for k, v in state.items():
            ours = 'head.fc.' + k[5:] if k.startswith('head.') else 'backbone.' + k
            assert torch.equal(own[ours], v), k


def test_official_kmax_detectron2_layout_is_converted(tmp_path):
    """kMaX detectron2 weights (``sem_seg_head.*``) into the mmseg semantic model: the head keys
    go under decode_head."""
    from clusterseg.apis import get_model
    from tests.test_tools.test_kmax_converter import to_d2_key
    config = osp.join(REPO, 'configs/kmax_deeplab/kmax-seg_r18-tiny_1xb4-300it_synthetic-ade20k-128x128.py')
    torch.manual_seed(0)
    model = get_model(config)
    own = model.state_dict()
    d2 = {to_d2_key('panoptic_head.' + k[len('decode_head.'):] if k.startswith('decode_head.') else k): v
          for k, v in own.items()}
    assert any(k.startswith('sem_seg_head.predictor._predcitor.') for k in d2)
    path = str(tmp_path / 'kmax_d2.pth')
    torch.save({'model': d2, 'iteration': 3}, path)
    loaded = get_model(config, pretrained=path).state_dict()
    assert set(loaded) == set(own) and all(torch.equal(loaded[k], own[k]) for k in own)


def test_unknown_name_lists_close_matches():
    from clusterseg.apis import UnknownModelError, get_model
    with pytest.raises(UnknownModelError) as e:
        get_model('pacahead_pacavit-tiny_8xb2-160k_ade20k')
    msg = str(e.value)
    assert SEG in msg and 'list_models' in msg
    with pytest.raises(UnknownModelError, match='pacavit-tiny_8xb128-300e_in1k'):
        get_model('pacavit-tiny_8xb128-300e_in1')


def test_pretrained_true_without_published_weights_names_the_model():
    from clusterseg.apis import get_model
    with pytest.raises(ValueError, match=f'{NO_WEIGHTS} has no published weights.*psvit/metafile.yml'):
        get_model(NO_WEIGHTS, pretrained=True)


def test_pretrained_true_offline_is_a_clear_error(tmp_path):
    from clusterseg.apis import WeightsDownloadError, get_model, get_model_info
    url = get_model_info(CLS).weights
    assert url.startswith('https://')
    with pytest.raises(WeightsDownloadError) as e:
        get_model(CLS, pretrained=True)
    msg = str(e.value)
    assert CLS in msg and url in msg and 'offline' in msg and 'pretrained=PATH' in msg
    # where to put a file fetched elsewhere
    assert osp.join(str(tmp_path / 'torch_home'), 'hub', 'checkpoints', osp.basename(url)) in msg


def test_pretrained_true_uses_the_metafile_url(cls_checkpoint, monkeypatch, tmp_path):
    """pretrained=True downloads the Weights: URL once (torch hub's cache) and loads it safely."""
    import shutil

    from clusterseg.apis import get_model, get_model_info
    path, model = cls_checkpoint
    urls = []

    def download(url, dst, *args, **kwargs):
        urls.append(url)
        shutil.copy(path, dst)

    monkeypatch.setattr(torch.hub, 'download_url_to_file', download)
    loaded = get_model(CLS, pretrained=True)
    get_model(CLS, pretrained=True)  # from the cache
    assert urls == [get_model_info(CLS).weights]
    assert torch.equal(loaded.state_dict()['head.fc.weight'], model.state_dict()['head.fc.weight'])


def test_checkpoint_that_does_not_fit_names_the_file(tmp_path, cls_checkpoint):
    from clusterseg.apis import get_model
    other = str(tmp_path / 'clustr_official.pth')
    torch.save(random_state(clustr_layout('tiny')), other)
    with pytest.raises(CheckpointMismatchError) as e:
        get_model(CLS, pretrained=other)
    assert other in str(e.value) and 'missing from the checkpoint' in str(e.value)
    # an ImageNet classifier is no checkpoint of a segmentor
    official = str(tmp_path / 'pacavit_official.pth')
    torch.save(random_state(pacavit_layout('tiny')), official)
    with pytest.raises(CheckpointMismatchError, match='ImageNet classifier'):
        get_model(SEG, pretrained=official)
    # our layout, but a key too few
    path, _ = cls_checkpoint
    state = torch.load(path)['state_dict']
    state.pop('head.fc.bias')
    short = str(tmp_path / 'short.pth')
    torch.save(state, short)
    with pytest.raises(CheckpointMismatchError, match='head.fc.bias'):
        get_model(CLS, pretrained=short)
    with pytest.raises(FileNotFoundError, match='nowhere.pth'):
        get_model(CLS, pretrained=str(tmp_path / 'nowhere.pth'))


def test_stock_inferencers_take_a_name(cls_checkpoint, tmp_path, fresh_scope):
    import mmcv
    from mmpretrain.apis import ImageClassificationInferencer
    from mmseg.apis import MMSegInferencer

    from clusterseg.apis import WeightsDownloadError
    img = str(tmp_path / 'img.png')
    mmcv.imwrite((np.random.RandomState(0).rand(64, 64, 3) * 255).astype(np.uint8), img)
    path, model = cls_checkpoint
    inferencer = ImageClassificationInferencer(CLS, pretrained=path, device='cpu')
    assert torch.equal(inferencer.model.state_dict()['head.fc.weight'], model.state_dict()['head.fc.weight'])
    out = inferencer(img)[0]
    assert 0 <= out['pred_label'] < 1000 and out['pred_class'].startswith('class ')
    # the published weights by default: offline, the same clear error
    with pytest.raises(WeightsDownloadError, match=CLS):
        ImageClassificationInferencer(CLS, device='cpu')
    seg = MMSegInferencer(SEG, weights=False, device='cpu')  # random weights on purpose
    assert seg.model.cfg.filename.endswith(SEG + '.py') and len(seg.model.dataset_meta['classes']) == 150
    assert seg(img)['predictions'].shape == (64, 64)
    from mmdet.apis import DetInferencer
    det = DetInferencer(DET, weights=False, device='cpu', show_progress=False)
    assert det.model.cfg.filename.endswith(DET + '.py') and len(det.model.dataset_meta['classes']) == 80
    with pytest.raises(ValueError, match='is an mmseg model.*MMSegInferencer'):
        DetInferencer(SEG, device='cpu')


@pytest.mark.parametrize('task', ['cls', 'seg'])
def test_clusterseg_inference_takes_a_name(task, cls_checkpoint, tmp_path, fresh_scope):
    import mmcv

    from clusterseg.apis import WeightsDownloadError, get_task, inference_model, init_inferencer
    img = (np.random.RandomState(0).rand(64, 64, 3) * 255).astype(np.uint8)
    if task == 'cls':
        path, _ = cls_checkpoint
        assert get_task(CLS) == 'cls'
        sample = inference_model(init_inferencer(CLS, path), img)
        assert 'pred_score' in sample
        with pytest.raises(WeightsDownloadError):
            inference_model(CLS, img)  # the published weights; offline
    else:
        with pytest.warns(UserWarning, match='no published weights'):
            inferencer = init_inferencer('pacahead_psvit-tiny_8xb2-160k_ade20k-512x512')
        assert 'pred_sem_seg' in inference_model(inferencer, img)
        with pytest.raises(ValueError, match='has no published weights'):
            init_inferencer('pacahead_psvit-tiny_8xb2-160k_ade20k-512x512', True)
    del mmcv


def test_the_model_runs_through_the_library_apis(fresh_scope, cls_checkpoint):
    """get_model's result carries what mmseg's own inference_model reads (cfg, dataset_meta,
    the default scope of a fresh process), and clusterseg.apis.inference_model takes it."""
    from mmseg.apis import inference_model as mmseg_inference_model

    from clusterseg.apis import get_model, inference_model
    img = (np.random.RandomState(0).rand(64, 64, 3) * 255).astype(np.uint8)
    model = get_model(SEG)
    result = mmseg_inference_model(model, img)
    assert result.pred_sem_seg.data.shape == (1, 64, 64)
    path, _ = cls_checkpoint
    sample = inference_model(get_model(CLS, pretrained=path), img)
    assert sample.pred_score.shape == (1000, )
