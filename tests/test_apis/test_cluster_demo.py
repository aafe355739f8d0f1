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
    ('seg', ['stage 1: 200 clusters', 'stage 3: 200 clusters', 'head: 8 class clusters']),
    ('det', ['stage 1: 100 clusters', 'stage 3: 100 clusters']),
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
    assert [t.split(':')[0] for t, _ in maps] == ['stage 1', 'stage 2', 'stage 3']
    for _, index in maps:
        assert index.ndim == 2 and index.min() >= 0


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
    """kMaX-DeepLab: each pixel's k-means cluster of the last decoder layer, on the padded input
    and cropped to the image; the same as the argmax of the model's own forward (its padding)."""
    import numpy as np
    import torch
    from mmdet.structures import DetDataSample

    from clusterseg.apis import init_inferencer
    from clusterseg.visualization import cluster_maps
    from clusterseg.visualization.clusters import _kmax_assignment, _model_inputs
    img, ckpts = inference_files
    inferencer = init_inferencer(config_path('panoptic'), ckpts['panoptic'])
    model = inferencer.model
    k = model.panoptic_head.num_queries
    (title, index), = cluster_maps(inferencer, img)  # an R18 backbone: only the decoder's clusters
    assert title.startswith('k-means:') and title.endswith(f'of {k} clusters used')
    assert index.shape == (32, 32) and 0 <= index.min() and index.max() < k  # 128 px, stride 4
    assert f'{len(np.unique(index))} of' in title
    with torch.no_grad():
        x = _model_inputs(inferencer, img)[0][..., :96, :]  # smaller than the fixed size
        _, small = _kmax_assignment(model, model.panoptic_head, x)
        _, mask_logits = model._forward(x, [DetDataSample(metainfo=dict(img_shape=(96, 128)))])
    assert small.shape == (24, 32)  # cropped back to the image
    assert np.array_equal(small, mask_logits[-1][0].argmax(0)[:24, :32].numpy())
    with pytest.raises(ValueError, match='fixed input size 128x128'):
        _kmax_assignment(model, model.panoptic_head, torch.zeros(1, 3, 128, 160))


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
    assert square.shape == (32, 32) and title.endswith(f'of {k} clusters used')
    img = (np.random.RandomState(2).rand(64, 128, 3) * 255).astype(np.uint8)
    (_, wide), = cluster_maps(inferencer, img)  # resized to 64x128, padded to 128x128
    assert wide.shape == (16, 32)
