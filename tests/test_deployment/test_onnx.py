"""ONNX export of every model family, checked with onnxruntime against PyTorch (max|diff| <= 1e-4)."""
import os.path as osp

import pytest
import torch
import torch.nn as nn

from clusterseg.deploy import onnx as D
from tests.conftest import run_tool
from tests.test_deployment.families import BACKBONES, FAMILIES, build, inputs

pytest.importorskip('onnxruntime')
TOL = 1e-4
TOOL = 'tools/deployment/pytorch2onnx.py'


@pytest.fixture(scope='module')
def models():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = build(name)
        return cache[name]
    return get


@pytest.mark.parametrize('name', list(FAMILIES))
def test_export_matches_pytorch(name, models, tmp_path):
    model = models(name)
    path = str(tmp_path / f'{name}.onnx')
    wrapper = D.export_onnx(model, path, FAMILIES[name][2])
    # another input than the traced one: data-dependent ops (DPC-kNN's sort / topk / scatter,
    # kMaX's argmax) are run by onnxruntime, not replayed from the trace
    x = inputs(name, seed=7)
    assert D.verify_onnx(wrapper, path, x) <= TOL
    import onnx
    graph = onnx.load(path)
    assert [o.name for o in graph.graph.output] == list(wrapper.output_names)
    assert graph.opset_import[0].version == D.OPSET


@pytest.mark.parametrize('name', ['pacavit-cls', 'psvit-cls', 'pacahead-seg', 'upernet-seg'])
def test_dynamic_export_follows_other_sizes(name, models, tmp_path):
    model = models(name)
    path = str(tmp_path / 'dyn.onnx')
    wrapper = D.export_onnx(model, path, FAMILIES[name][2], dynamic=True)
    for batch, shape in [(1, (64, 64)), (2, (96, 128)), (1, (160, 96))]:
        x = inputs(name, batch, shape=shape)
        assert D.verify_onnx(wrapper, path, x) <= TOL, (batch, shape)
    if name.endswith('-seg'):  # logits at the input size, whatever it is
        out = D.run_onnx(path, inputs(name, 2, shape=(96, 128)))[0]
        assert out.shape[0] == 2 and out.shape[2:] == (96, 128)


@pytest.mark.parametrize('backbone', list(BACKBONES))
def test_backbone_only(backbone, models, tmp_path):
    model = models(BACKBONES[backbone])
    path = str(tmp_path / 'bb.onnx')
    dynamic = FAMILIES[BACKBONES[backbone]][3]
    wrapper = D.export_onnx(model, path, (64, 64), dynamic=dynamic, backbone_only=True)
    assert isinstance(wrapper.backbone, type(model.backbone))
    x = inputs('pacavit-cls', shape=(96, 64) if dynamic else (64, 64))
    assert D.verify_onnx(wrapper, path, x) <= TOL


# ------------------------------------------------------------- the wrappers are the models' predictions
def test_classifier_logits_are_the_prediction(models):
    model = models('pacavit-cls')
    x = inputs('pacavit-cls', 2)
    with torch.no_grad():
        logits = D.export_wrapper(model)(x)
        samples = model(x, mode='predict')
    assert logits.shape == (2, 8)
    torch.testing.assert_close(logits.softmax(-1), torch.stack([s.pred_score for s in samples]))


@pytest.mark.parametrize('name', ['pacahead-seg', 'kmax-seg'])
def test_seg_logits_are_the_prediction(name, models):
    from mmseg.structures import SegDataSample
    model = models(name)
    x = inputs(name)
    H, W = x.shape[2:]
    meta = dict(img_shape=(H, W), ori_shape=(H, W), pad_shape=(H, W), padding_size=[0, 0, 0, 0],
                batch_input_shape=(H, W))
    with torch.no_grad():
        out = D.export_wrapper(model)(x)
        pred = model(x, [SegDataSample(metainfo=meta)], mode='predict')[0]
    assert out.shape == (1, 8, H, W)
    torch.testing.assert_close(out[0], pred.seg_logits.data)


def test_panoptic_outputs_fuse_like_the_model(models, tmp_path):
    from mmdet.structures import DetDataSample
    model = models('kmax-panoptic')
    x = inputs('kmax-panoptic')
    path = str(tmp_path / 'pan.onnx')
    D.export_onnx(model, path, (128, 128))
    class_logits, mask_logits = D.run_onnx(path, x)
    K = model.panoptic_head.num_queries if hasattr(model.panoptic_head, 'num_queries') else 16
    assert class_logits.shape == (1, K, 5 + 4 + 1) and mask_logits.shape == (1, K, 128, 128)

    def sample():
        return DetDataSample(metainfo=dict(img_shape=(128, 128), ori_shape=(128, 128), pad_shape=(128, 128),
                                           batch_input_shape=(128, 128), scale_factor=(1., 1.)))
    with torch.no_grad():
        ref = model(x, [sample()], mode='predict')[0]
    got = D.panoptic_postprocess(model, class_logits, mask_logits, [sample()])[0]
    assert torch.equal(got.pred_panoptic_seg.sem_seg, ref.pred_panoptic_seg.sem_seg)


# ------------------------------------------------------------------------------ exporter pieces
@pytest.mark.parametrize('size,out', [((16, 16), (6, 6)), ((7, 10), (3, 4)), ((5, 5), (2, 2)), ((4, 6), (4, 6))])
def test_exportable_adaptive_pool_equals_pytorch(size, out):
    x = torch.randn(2, 3, *size)
    ref = nn.AdaptiveAvgPool2d(out)(x)
    torch.testing.assert_close(D._ExportableAdaptiveAvgPool2d(out)(x), ref, rtol=1e-6, atol=1e-6)
    # hand check of one bin: output row 1 of 3 over 7 rows averages rows floor(7/3)=2 .. ceil(14/3)-1=4
    if size == (7, 10):
        torch.testing.assert_close(D._mean_matrix(7, 3, torch.float32, 'cpu')[1],
                                   torch.tensor([0, 0, 1, 1, 1, 0, 0]) / 3.)


def test_export_patches_are_undone(models, tmp_path):
    model = models('upernet-seg')
    pools = [m for m in model.modules() if type(m) is nn.AdaptiveAvgPool2d]
    assert pools
    D.export_onnx(model, str(tmp_path / 'u.onnx'), (64, 64))
    assert [m for m in model.modules() if type(m) is nn.AdaptiveAvgPool2d] == pools
    assert not any(isinstance(m, D._ExportableAdaptiveAvgPool2d) for m in model.modules())
    from torch.onnx._internal.torchscript_exporter import registration
    group = registration.registry.get_function_group('aten::sort')
    assert group.get(D.OPSET) is not D._sort_symbolic


def test_sort_ties_keep_index_order(tmp_path):
    """Stable sort (DPC-kNN's tie rule) through ONNX TopK: equal values keep index order."""

    class Sort(nn.Module):
        def forward(self, x):
            return torch.sort(x, dim=-1, descending=True, stable=True).indices

    x = torch.tensor([[1., 3., 1., 3., 2., 1.]])
    path = str(tmp_path / 's.onnx')
    with D._export_patches(Sort(), D.OPSET):
        torch.onnx.export(Sort(), (x, ), path, dynamo=False, opset_version=D.OPSET)
    assert D.run_onnx(path, x)[0].tolist() == [[1, 3, 4, 0, 2, 5]]


@pytest.mark.parametrize('B,N,C,counts', [(1, 64, 16, [4, 16]), (2, 49, 8, [3]), (1, 256, 16, [4, 16])])
def test_traceable_dpc_knn_is_the_library_s(B, N, C, counts):
    """The export-time DPC-kNN (one static graph) gives the library's assignments, ties included."""
    from clusterseg.models.layers.dpc_cluster import dpc_knn
    g = torch.Generator().manual_seed(N)
    x = torch.randn(B, N, C, generator=g)
    x[:, N // 2:N // 2 + 4] = x[:, :4]  # duplicated tokens: equal densities and distances
    for a, b in zip(D.dpc_knn_traceable(x, counts), dpc_knn(x, counts)):
        assert torch.equal(a, b)
    assert torch.equal(D.dpc_knn_traceable(x, counts[0]), dpc_knn(x, counts[0]))


def test_index_add_with_repeated_indices(tmp_path):
    class Pool(nn.Module):
        def forward(self, src, idx):
            return src.new_zeros(3, src.shape[1]).index_add(0, idx, src)

    src, idx = torch.arange(8.).reshape(4, 2), torch.tensor([2, 0, 2, 2])
    path = str(tmp_path / 'i.onnx')
    with D._export_patches(Pool(), D.OPSET):
        torch.onnx.export(Pool(), (src, idx), path, dynamo=False, opset_version=D.OPSET)
    # rows 0, 2, 3 -> 2 and row 1 -> 0, by hand
    assert D.run_onnx(path, (src, idx))[0].tolist() == [[2., 3.], [0., 0.], [0 + 4 + 6, 1 + 5 + 7]]


def test_time_onnx_vs_eager(models):
    res = D.time_onnx_vs_eager(models('pacahead-seg'), inputs('pacahead-seg'), repeat=2)
    assert res['eager_ms'] > 0 and res['onnx_ms'] > 0 and res['max_abs_diff'] <= TOL
    assert res['speedup'] == pytest.approx(res['eager_ms'] / res['onnx_ms'])


# --------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize('name', ['kmax-seg', 'kmax-panoptic'])
def test_kmax_refuses_dynamic_and_other_sizes(name, models, tmp_path):
    model = models(name)
    with pytest.raises(D.ExportError, match='fixed input size 128x128.*--dynamic'):
        D.export_onnx(model, str(tmp_path / 'k.onnx'), (128, 128), dynamic=True)
    with pytest.raises(D.ExportError, match='not --shape 96 128'):
        D.export_onnx(model, str(tmp_path / 'k.onnx'), (96, 128))
    assert not (tmp_path / 'k.onnx').exists()


def test_clustr_refuses_dynamic(models, tmp_path):
    with pytest.raises(D.ExportError, match='ClusTR.*cluster counts'):
        D.export_onnx(models('clustr-cls'), str(tmp_path / 'c.onnx'), (64, 64), dynamic=True)


def test_shape_the_model_cannot_take(models, tmp_path):
    # ClusTR's first stage clusters N // 8^2 tokens: 16 px gives a 4 x 4 grid, no cluster
    with pytest.raises(D.ExportError, match='does not run at --shape 16 16.*M=0 clusters'):
        D.export_onnx(models('clustr-cls'), str(tmp_path / 'c.onnx'), (16, 16))
    with pytest.raises(D.ExportError, match='--shape must be two positive ints'):
        D.check_export_shape(models('pacavit-cls'), (0, 64))


def test_mask_rcnn_exports_its_backbone_only(tmp_path):
    model = D.build_model_for_export('configs/pacavit/mask-rcnn_pacavit-tiny_fpn_1xb4-12e_synthetic-coco-128x128.py',
                                     cfg_options=dict(model=dict(backbone=dict(arch=FAMILIES['pacavit-cls'][1]
                                                                               ['model']['backbone']['arch']),
                                                                 neck=dict(in_channels=[16, 32, 48, 64]))))
    with pytest.raises(D.ExportError, match='Mask R-CNN needs mmcv ops.*--backbone-only'):
        D.export_wrapper(model)
    wrapper = D.export_onnx(model, str(tmp_path / 'bb.onnx'), (64, 64), backbone_only=True)
    assert wrapper.output_names == ('feat0', 'feat1', 'feat2', 'feat3')


def test_checkpoint_must_fit(models, tmp_path):
    from clusterseg.utils.state_dict import CheckpointMismatchError
    state = dict(models('pacavit-cls').state_dict())
    state.pop('head.fc.weight')
    path = tmp_path / 'partial.pth'
    torch.save({'state_dict': state}, path)
    config, options = FAMILIES['pacavit-cls'][:2]
    with pytest.raises(CheckpointMismatchError, match='head.fc.weight'):
        D.build_model_for_export(config, str(path), cfg_options=options)


# -------------------------------------------------------------------------------------------- CLI
def test_cli_export_with_checkpoint_and_verify(models, tmp_path):
    model = models('pacahead-seg')
    ckpt = tmp_path / 'model.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    out = tmp_path / 'paca.onnx'
    # a user's config: the synthetic one with the tiny widths of the family
    config = tmp_path / 'tiny_paca.py'
    config.write_text(f"_base_ = {osp.abspath(FAMILIES['pacahead-seg'][0])!r}\n"
                      f"model = {FAMILIES['pacahead-seg'][1]['model']!r}\n")
    proc = run_tool([TOOL, str(config), str(ckpt), '--shape', '64', '64', '--dynamic', '--verify',
                     '--out', str(out)])
    assert out.is_file()
    assert 'onnxruntime vs PyTorch at 1x3x64x64' in proc.stdout
    assert 'onnxruntime vs PyTorch at 2x3x96x128' in proc.stdout  # the second, dynamic size
    diffs = [float(line.rsplit('=', 1)[1]) for line in proc.stdout.splitlines() if 'max|diff|' in line]
    assert len(diffs) == 2 and max(diffs) <= TOL
    # the exported weights are the checkpoint's (strict load), not a fresh random init
    x = inputs('pacahead-seg')
    assert D.verify_onnx(D.export_wrapper(model), str(out), x) <= TOL


def test_cli_errors(tmp_path, capsys):
    from tools.deployment import pytorch2onnx
    kmax = FAMILIES['kmax-seg'][0]
    with pytest.raises(SystemExit, match='error: .*fixed input size 128x128'):
        pytorch2onnx.main([kmax, 'none', '--shape', '128', '128', '--dynamic', '--out', str(tmp_path / 'k.onnx')])
    assert not (tmp_path / 'k.onnx').exists()
    with pytest.raises(SystemExit, match='error: checkpoint .*missing.pth not found'):
        pytorch2onnx.main([kmax, str(tmp_path / 'missing.pth'), '--shape', '128', '128'])
    for shape, message in [(['128'], '--shape: expected 2 arguments'),
                           (['0', '128'], '--shape must be two positive ints H W, got 0 128')]:
        with pytest.raises(SystemExit) as exc:
            pytorch2onnx.parse_args([kmax, 'none', '--shape', *shape])
        assert exc.value.code == 2 and message in capsys.readouterr().err


def test_a_graph_that_ignores_its_input_is_refused(tmp_path, monkeypatch):
    """E.g. a module computing on a path the tracer does not record: folded to constants."""
    model = build('psvit-cls')
    with torch.no_grad():
        feats = model.backbone(torch.zeros(1, 3, 64, 64))
    monkeypatch.setattr(model.backbone, 'forward', lambda x: feats)
    with pytest.raises(D.ExportError, match='does not depend on its input'):
        D.export_onnx(model, str(tmp_path / 'c.onnx'), (64, 64))
    assert not (tmp_path / 'c.onnx').exists()
