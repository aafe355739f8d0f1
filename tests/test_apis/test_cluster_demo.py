"""demo/cluster_demo.py: the learned clusters next to the prediction, one PNG."""
import pytest

from tests.conftest import REPO, run_tool
from tests.test_apis.conftest import config_path
from tests.test_apis.test_image_demo import load_demo

CLUSTR_CLS = 'configs/clustr/clustr-tiny_1xb32-10e_synthetic-imagenet-64px.py'


def test_help_has_example():
    out = run_tool(['demo/cluster_demo.py', '--help']).stdout
    assert 'example:' in out and '--out-file' in out


@pytest.mark.parametrize('task,titles', [
    ('seg', ['stage1: ', 'stage2: ', 'stage3: ', 'head: ']),
    ('det', ['stage1: ', 'stage2: ', 'stage3: ']),
])
def test_cluster_demo_pacavit(inference_files, tmp_path, capsys, task, titles):
    import mmcv
    img, ckpts = inference_files
    out_file = tmp_path / 'clusters.png'
    load_demo('cluster_demo').main([img, config_path(task), ckpts[task], '--out-file',
                                    str(out_file), '--height', '64'])
    out = capsys.readouterr().out
    assert all(t in out for t in titles)
    n_panels = 1 + {'seg': 4, 'det': 3}[task]  # the prediction, stages 1-3 (stage 4: M=0), head
    assert f'prediction and {n_panels - 1} cluster maps' in out
    drawn = mmcv.imread(str(out_file))
    # 64 px panels under an 18 px title bar, side by side with 4 px gaps
    assert drawn.shape == (64 + 18, n_panels * 64 + (n_panels - 1) * 4, 3)


def test_cluster_maps_clustr(tmp_path):
    import numpy as np
    import torch
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope

    from clusterseg.apis import init_inferencer
    from clusterseg.visualization import cluster_maps
    cfg = Config.fromfile(f'{REPO}/{CLUSTR_CLS}')
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
    ckpt = str(tmp_path / 'clustr.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    img = (torch.rand(64, 64, 3) * 255).byte().numpy()
    maps = cluster_maps(init_inferencer(cfg, ckpt), img)
    # the cluster contract's names: per clustering stage (1-3), per scale (M0 and 4 M0 clusters)
    assert [t.split(':')[0] for t, _ in maps] == [f'stage{i}/scale{s}' for i in (1, 2, 3) for s in (0, 1)]
    # the test pipeline's 56 px centre crop: token grids 14, 7, 4 (stride-2 convs round up)
    assert [index.shape for _, index in maps] == [(14, 14)] * 2 + [(7, 7)] * 2 + [(4, 4)] * 2
    for title, index in maps:
        assert index.ndim == 2 and index.min() >= 0
        assert title.endswith(f': {len(np.unique(index))} clusters')  # the clusters in the map


def test_cluster_demo_rejects_model_without_clusters(inference_files, tmp_path):
    img, ckpts = inference_files
    with pytest.raises(SystemExit, match='exposes no clusters'):
        load_demo('cluster_demo').main([img, f'{REPO}/configs/demo/segformer_mit-b0_1xb8-300it_'
                                        'synthetic-ade20k-128x128.py', ckpts['seg'],
                                        '--out-file', str(tmp_path / 'x.png'),
                                        '--allow-partial-load'])  # a PaCa checkpoint: no fit


def test_compose_panels_colours_each_cluster():
    import numpy as np

    from clusterseg.visualization import colour_index_map, compose_panels
    index = np.array([[0, 1], [2, 1]])
    rgb = colour_index_map(index, (4, 4))
    assert rgb.shape == (4, 4, 3)
    assert (rgb[0, 2] == rgb[2, 2]).all() and (rgb[0, 0] != rgb[0, 2]).any()
    strip = compose_panels(np.zeros((8, 16, 3), np.uint8), [('a', index)], height=8)
    assert strip.shape == (8 + 18, 16 + 4 + 16, 3)


def test_cluster_maps_kmax_kmeans_assignment(inference_files):
    """kMaX-DeepLab: each pixel's k-means cluster of the last decoder layer (the detector's
    cluster_maps: on the padded input, cropped to the image); the same as the argmax of the
    model's own forward."""
    import numpy as np
    import torch
    from mmdet.structures import DetDataSample

    from clusterseg.apis import init_inferencer
    from clusterseg.visualization import cluster_maps
    from clusterseg.visualization.clusters import _model_inputs
    img, ckpts = inference_files
    inferencer = init_inferencer(config_path('panoptic'), ckpts['panoptic'])
    model = inferencer.model
    k = model.panoptic_head.num_queries
    (title, index), = cluster_maps(inferencer, img)  # an R18 backbone: only the decoder's clusters
    assert title == f'head: {len(np.unique(index))} clusters'
    assert index.shape == (32, 32) and 0 <= index.min() and index.max() < k  # 128 px, stride 4
    with torch.no_grad():
        x = _model_inputs(inferencer, img)[0]
        _, mask_logits = model._forward(x, [DetDataSample(metainfo=dict(img_shape=(128, 128)))])
    assert np.array_equal(index, mask_logits[-1][0].argmax(0).numpy())
    # smaller than the fixed size (the synthetic config's pipeline only lets squares fit): the
    # detector pads to 128x128 and crops its map back to the input it was given, as the contract says
    x = x[..., :96, :]
    (_, small), = model.cluster_maps(x)
    with torch.no_grad():
        _, mask_logits = model._forward(x, [DetDataSample(metainfo=dict(img_shape=(96, 128)))])
    assert small.shape == (1, 24, 32)
    assert torch.equal(small[0], mask_logits[-1][0].argmax(0)[:24, :32])


def test_cluster_maps_calls_only_the_contract():
    """Any model: the model's own cluster_maps if it has one, else the backbone's (given the image
    batch) and then each submodule's that has one (given extract_feat), in that order; the maps
    are cropped to the image; a name two heads share is prefixed by the head's attribute."""
    import numpy as np
    import torch
    import torch.nn as nn

    from clusterseg.visualization import cluster_maps

    class Backbone(nn.Module):
        def cluster_maps(self, x):  # stride 2
            assert x.shape == (1, 3, 8, 12)
            return [('stage1', torch.arange(24).view(1, 4, 6))]

    class Head(nn.Module):
        def __init__(self, value):
            super().__init__()
            self.value = value

        def cluster_maps(self, feats):
            assert feats == 'feats'
            return [('head', torch.full((1, 8, 12), self.value, dtype=torch.long))]

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone, self.neck = Backbone(), nn.Identity()
            self.decode_head, self.auxiliary_head = Head(1), Head(2)
            sample = type('Sample', (), {'metainfo': {'img_shape': (4, 12)}})()  # padded 4 -> 8 rows
            self.data_preprocessor = lambda batch, training: dict(
                inputs=torch.zeros(1, 3, 8, 12), data_samples=[sample])

        def extract_feat(self, x):
            return 'feats'

    class Inferencer:
        def __init__(self, model):
            self.model = model

        def preprocess(self, imgs, batch_size):
            yield {}

    maps = cluster_maps(Inferencer(Model()), None)
    assert [t for t, _ in maps] == ['stage1: 12 clusters', 'decode_head.head: 1 clusters',
                                    'auxiliary_head.head: 1 clusters']
    assert np.array_equal(maps[0][1], np.arange(24).reshape(4, 6)[:2])  # the image's top 4 of 8 rows
    assert maps[1][1].shape == (4, 12) and (maps[2][1] == 2).all()

    class Whole(Model):
        def cluster_maps(self, x):  # the model's own: backbone and heads are not asked
            return [('head', torch.zeros(1, 8, 12, dtype=torch.long))]

    assert [t for t, _ in cluster_maps(Inferencer(Whole()), None)] == ['head: 1 clusters']
    model = Model()
    model.backbone, model.decode_head, model.auxiliary_head = nn.Identity(), nn.Identity(), nn.Identity()
    with pytest.raises(ValueError, match='exposes no clusters'):
        cluster_maps(Inferencer(model), None)


def test_cluster_maps_kmax_semantic_crops_the_padding(tmp_path):
    """mmseg pads the image to kMaX's fixed size before the model: the map covers the image only."""
    import numpy as np
    import torch
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope

    from clusterseg.apis import init_inferencer
    from clusterseg.visualization import cluster_maps
    config = f'{REPO}/configs/kmax_deeplab/kmax-seg_r18-tiny_1xb4-300it_synthetic-ade20k-128x128.py'
    cfg = Config.fromfile(config)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        torch.manual_seed(0)
        model = MODELS.build(cfg.model)
    ckpt = str(tmp_path / 'kmax_seg.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    inferencer = init_inferencer(config, ckpt)
    k = inferencer.model.decode_head.num_queries
    (title, square), = cluster_maps(inferencer, np.zeros((128, 128, 3), np.uint8))
    assert square.shape == (32, 32) and title == f'head: {len(np.unique(square))} clusters'
    assert 0 <= square.min() and square.max() < k
    img = (np.random.RandomState(2).rand(64, 128, 3) * 255).astype(np.uint8)
    (_, wide), = cluster_maps(inferencer, img)  # resized to 64x128, padded to 128x128
    assert wide.shape == (16, 32)
