"""kMaX-DeepLab in mmdet (panoptic + instance) and mmseg (semantic): build, train step, padding, metrics."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope

from tests.conftest import REPO

CFG_DIR = osp.join(REPO, 'configs', 'kmax_deeplab')
PAN_SYN = osp.join(CFG_DIR, 'kmax-deeplab_r18-tiny_1xb2-300it_synthetic-coco-panoptic-128x128.py')
SEG_SYN = osp.join(CFG_DIR, 'kmax-seg_r18-tiny_1xb4-300it_synthetic-ade20k-128x128.py')


def null_init_cfgs(cfg):
    """Drop every pretrained-weight init_cfg (no downloads in tests)."""
    if isinstance(cfg, dict):
        if 'init_cfg' in cfg:
            cfg['init_cfg'] = None
        for v in cfg.values():
            null_init_cfgs(v)
    elif isinstance(cfg, list):
        for v in cfg:
            null_init_cfgs(v)
    return cfg


def build_model(config):
    import clusterseg.models  # noqa: F401
    cfg = Config.fromfile(config)
    init_default_scope(cfg.default_scope)
    if cfg.default_scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    return MODELS.build(null_init_cfgs(cfg.model)), cfg


def build_dataset(cfg, root, split='val'):
    init_default_scope(cfg.default_scope)
    if cfg.default_scope == 'mmdet':
        from mmdet.registry import DATASETS
    else:
        from mmseg.registry import DATASETS
    ds_cfg = (cfg.train_dataloader if split == 'train' else cfg.val_dataloader).dataset.copy()
    ds_cfg.data_root = str(root)
    return DATASETS.build(ds_cfg)


@pytest.mark.parametrize('config', sorted(glob.glob(osp.join(CFG_DIR, '*.py'))), ids=osp.basename)
def test_every_kmax_config_builds(config):
    model, cfg = build_model(config)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params > 0
    head = getattr(model, 'panoptic_head', None) or model.decode_head
    assert head.num_queries == cfg.model.get('panoptic_head', cfg.model.get('decode_head')).num_queries
    if 'synthetic' not in config:
        assert head.num_queries == 128
        assert len(head.transformer_decoder.kmax_transformer_layers) == 6


def _panoptic_batch(model, cfg, root, split, n=2):
    ds = build_dataset(cfg, root / 'coco', split)
    return ds, model.data_preprocessor(pseudo_collate([ds[i] for i in range(n)]), split == 'train')


def test_synthetic_panoptic_forward_backward(synthetic_root):
    torch.manual_seed(0)
    model, cfg = build_model(PAN_SYN)
    model.train()
    _, data = _panoptic_batch(model, cfg, synthetic_root, 'train')
    losses = model.loss(data['inputs'], data['data_samples'])
    per_output = ['loss_cls', 'loss_dice', 'loss_mask', 'loss_insdis']
    n_aux = len(model.panoptic_head.transformer_decoder.kmax_transformer_layers)
    expected = set(per_output) | {f'd{i}.{k}' for i in range(n_aux) for k in per_output} | {'loss_aux_sem'}
    assert set(losses) == expected
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    head = model.panoptic_head
    assert head.transformer_decoder.cluster_centers.weight.grad.abs().sum() > 0
    assert model.backbone.conv1.weight.grad.abs().sum() > 0
    assert head.aux_semantic_head.final_conv.conv.weight.grad.abs().sum() > 0
    # padded to the fixed size before the backbone: final masks at stride 4 of 128
    assert data['data_samples'][0].batch_input_shape == (128, 128)


def test_fixed_size_padding_and_too_large_error(synthetic_root):
    model, cfg = build_model(PAN_SYN)
    model.eval()
    ds, data = _panoptic_batch(model, cfg, synthetic_root, 'val', n=1)
    inputs = data['inputs'][..., :100, :120]  # smaller than the fixed 128x128
    sample = data['data_samples'][0]
    sample.set_metainfo(dict(img_shape=(100, 120)))
    with torch.no_grad():
        out = model.predict(inputs, [sample])[0]
    assert sample.batch_input_shape == (128, 128)
    assert out.pred_panoptic_seg.sem_seg.shape[-2:] == tuple(sample.ori_shape)
    big = torch.zeros(1, 3, 130, 128)
    with pytest.raises(ValueError, match='fixed input size 128x128'):
        model.predict(big, [sample])
    model.train()
    with pytest.raises(ValueError, match='fixed input size'):
        model.loss(big, [sample])


@pytest.mark.parametrize('hw', [(96, 160), (200, 150)])
def test_synthetic_panoptic_pipelines_fit_any_aspect_ratio(hw, tmp_path):
    """The synthetic (and custom) kMaX config resizes the longer side to the fixed 128, as the
    1281x1281 recipe does: non-square images train and predict (they were made wider than 128 and
    refused)."""
    from clusterseg.datasets import synthetic
    synthetic.make_panoptic(str(tmp_path / 'coco'), num_train=2, num_val=2, size=hw, seed=3)
    model, cfg = build_model(PAN_SYN)
    scale = 128 / max(hw)
    want = (round(hw[0] * scale), round(hw[1] * scale))
    model.train()
    ds, data = _panoptic_batch(model, cfg, tmp_path, 'train')
    assert ds[0]['data_samples'].img_shape == want
    losses = model.loss(data['inputs'], data['data_samples'])
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    ds, data = _panoptic_batch(model, cfg, tmp_path, 'val', n=1)
    with torch.no_grad():
        out = model.predict(data['inputs'], data['data_samples'])[0]
    assert data['data_samples'][0].batch_input_shape == (128, 128)
    assert tuple(out.pred_panoptic_seg.sem_seg.shape[-2:]) == hw  # back at the image's size


def _oracle_logits(labels, masks, num_classes, K=12):
    """Logits whose kMaX post-processing reproduces the GT segments exactly."""
    M, H, W = masks.shape
    cls = torch.zeros(K, num_classes + 1)
    cls[:, -1] = 20.  # unused clusters: void
    mask = torch.zeros(K, H, W)
    for m in range(M):
        cls[m, -1] = 0.
        cls[m, labels[m]] = 20.
        mask[m] = 20. * masks[m].float()
    return cls, mask


def test_oracle_predictions_score_full_pq_and_ap(synthetic_root):
    """The fusion head's panoptic / instance outputs are in the format mmdet's metrics read."""
    from mmdet.evaluation import CocoMetric, CocoPanopticMetric
    from mmdet.models.utils import preprocess_panoptic_gt
    model, cfg = build_model(PAN_SYN)
    fusion = model.panoptic_fusion_head
    coco = synthetic_root / 'coco'
    ds = build_dataset(cfg, coco, 'val')
    pan_metric = CocoPanopticMetric(ann_file=str(coco / 'annotations/panoptic_val2017.json'),
                                    seg_prefix=str(coco / 'annotations/panoptic_val2017'))
    ins_metric = CocoMetric(ann_file=str(coco / 'annotations/instances_val2017.json'), metric=['bbox', 'segm'])
    pan_metric.dataset_meta = ins_metric.dataset_meta = ds.metainfo
    samples = []
    for i in range(len(ds)):
        sample = ds[i]['data_samples']
        labels, masks = preprocess_panoptic_gt(sample.gt_instances.labels, sample.gt_instances.masks,
                                               sample.gt_sem_seg.sem_seg, 5, 4)
        cls, mask = _oracle_logits(labels, masks, 9)
        sample.set_metainfo(dict(img_shape=sample.ori_shape))  # logits at the original size
        result = fusion.predict(cls[None], mask[None], [sample], rescale=False)[0]
        sample.pred_panoptic_seg = result['pan_results']
        sample.pred_instances = result['ins_results']
        samples.append(sample.to_dict())
    pan_metric.process({}, samples)
    ins_metric.process({}, samples)
    pq = pan_metric.compute_metrics(pan_metric.results)
    ap = ins_metric.compute_metrics(ins_metric.results)
    assert pq['PQ'] > 99.9 and pq['PQ_th'] > 99.9 and pq['PQ_st'] > 99.9, pq
    assert ap['segm_mAP'] > 0.99 and ap['bbox_mAP'] > 0.9, ap


def test_fusion_head_mask_wise_merging_by_hand():
    from clusterseg.models.dense_heads import KMaXFusionHead
    head = KMaXFusionHead(num_things_classes=2, num_stuff_classes=2, test_cfg=dict(
        pixel_confidence_threshold=0.4, class_threshold_thing=0.7, class_threshold_stuff=0.5,
        overlap_threshold=0.8, instance_on=True, semantic_on=True))
    H, W = 4, 6
    mask = torch.full((4, H, W), -10.)
    mask[0, :, :3] = 10.  # thing (class 0), confident
    mask[1, :, 3:] = 10.  # stuff (class 3)
    mask[2, :2, 2:4] = 12.  # thing (class 1) over both, not confident enough (class prob 0.5)
    mask[3, 3:, :] = 11.  # stuff (class 3) again: merged into one id with cluster 1
    cls = torch.full((4, 5), -10.)
    cls[0, 0], cls[1, 3], cls[2, 1], cls[2, -1], cls[3, 3] = 10., 10., 10., 10., 10.  # cluster 2: 0.5 prob
    pan = head.panoptic_postprocess(cls, mask).sem_seg[0]
    # by hand: softmax over clusters > 0.4 gives cluster 0 = cols 0-2 minus (rows 0-1, col 2) minus row 3
    # (7 px), cluster 1 = cols 3-5 minus (rows 0-1, col 3) minus row 3 (7 px), cluster 2 = rows 0-1 x
    # cols 2-3 (4 px), cluster 3 = row 3 (6 px). Cluster 2's class prob is 0.5 < 0.7: dropped (its pixels
    # stay void = 4). Cluster 3 (highest mask score) pastes row 3 as stuff 3; clusters 0 and 1 find all
    # their pixels free: thing 0 gets id 0 + 1 * 1000, stuff cluster 1 merges into stuff id 3.
    expected = torch.tensor([[1000, 1000, 4, 4, 3, 3],
                             [1000, 1000, 4, 4, 3, 3],
                             [1000, 1000, 1000, 3, 3, 3],
                             [3, 3, 3, 3, 3, 3]], dtype=torch.int32)
    assert torch.equal(pan, expected)
    # with a thing threshold below 0.5, cluster 2 (ranked last, its 4 px still free) is the second thing
    head.test_cfg['class_threshold_thing'] = 0.4
    pan = head.panoptic_postprocess(cls, mask).sem_seg[0]
    assert torch.equal(pan, torch.where(expected == 4, torch.full_like(expected, 1 + 2 * 1000), expected))
    # overlap rule: cluster 3 ties cluster 0 on rows 0-2 x cols 0-1 (both 0.5 > 0.4), so both binary masks
    # hold those 6 px; cluster 3 (mask score (6 + 6 * 0.5) / 12) ranks before cluster 0 ((6 * 0.5 + 1) / 7)
    # and takes them, leaving cluster 0 one free pixel of 7 (<= 0.8): cluster 0 is dropped, (2, 2) stays void
    head.test_cfg['class_threshold_thing'] = 0.7
    mask[3, :3, :2] = 10.
    pan = head.panoptic_postprocess(cls, mask).sem_seg[0]
    expected2 = torch.where(expected == 1000, torch.full_like(expected, 3), expected)
    expected2[2, 2] = 4
    assert torch.equal(pan, expected2)
    ins = head.instance_postprocess(cls, mask)
    assert ins.masks.shape[1:] == (H, W) and set(ins.labels.tolist()) <= {0, 1}
    sem = head.semantic_postprocess(cls, mask)
    assert sem.sem_seg.shape == (1, H, W) and sem.sem_seg[0, 0, 0] == 0 and sem.sem_seg[0, 0, 5] == 3


def test_untrained_model_predictions_are_scored(synthetic_root):
    from mmdet.evaluation import CocoPanopticMetric
    model, cfg = build_model(PAN_SYN)
    model.eval()
    coco = synthetic_root / 'coco'
    ds, data = _panoptic_batch(model, cfg, synthetic_root, 'val', n=2)
    with torch.no_grad():
        out = model.predict(data['inputs'], data['data_samples'])
    metric = CocoPanopticMetric(ann_file=str(coco / 'annotations/panoptic_val2017.json'),
                                seg_prefix=str(coco / 'annotations/panoptic_val2017'))
    metric.dataset_meta = ds.metainfo
    metric.process({}, [o.to_dict() for o in out])
    res = metric.compute_metrics(metric.results)
    assert 0 <= res['PQ'] <= 100
    assert out[0].pred_panoptic_seg.sem_seg.shape[-2:] == tuple(out[0].ori_shape)


def test_semantic_head_shapes_loss_and_iou_metric(synthetic_root):
    from mmseg.evaluation import IoUMetric
    torch.manual_seed(0)
    model, cfg = build_model(SEG_SYN)
    ds = build_dataset(cfg, synthetic_root / 'ade', 'train')
    model.train()
    data = model.data_preprocessor(pseudo_collate([ds[i] for i in range(2)]), True)
    losses = model.loss(data['inputs'], data['data_samples'])
    assert 'decode.loss_cls' in losses and 'decode.d0.loss_dice' in losses and 'decode.loss_aux_sem' in losses
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    model.eval()
    val = build_dataset(cfg, synthetic_root / 'ade', 'val')
    data = model.data_preprocessor(pseudo_collate([val[i] for i in range(2)]), False)
    assert data['inputs'].shape[-2:] == (128, 128)
    with torch.no_grad():
        out = model.predict(data['inputs'], data['data_samples'])
    assert out[0].seg_logits.data.shape == (8, ) + tuple(out[0].ori_shape)
    probs = out[0].seg_logits.data.sum(0)  # class probs x softmax-over-K masks: sums to 1 - void mass
    assert (probs <= 1 + 1e-4).all() and (probs > 0).all()
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = val.metainfo
    metric.process({}, [o.to_dict() for o in out])
    assert 0 <= metric.compute_metrics(metric.results)['mIoU'] <= 100
    # an image larger than the fixed size is refused, not silently mis-padded
    with pytest.raises(ValueError, match='fixed input size'):
        model.decode_head.predict(model.extract_feat(torch.zeros(1, 3, 160, 128)),
                                  [dict(img_shape=(160, 128), pad_shape=(160, 128))])


def test_targets_strided_slicing_void_and_shared_matching():
    """GT is subsampled by [::4, ::4] (not interpolation); one matching per image serves all outputs."""
    torch.manual_seed(0)
    model, _ = build_model(PAN_SYN)
    head = model.panoptic_head
    K, C = head.num_queries, head.num_classes
    H = W = 13  # odd, like 1281: the stride-4 map is ceil(13 / 4) = 4
    gen = torch.Generator().manual_seed(0)
    owner = torch.randint(0, 4, (H, W), generator=gen)  # 3 = void
    masks = torch.stack([owner == m for m in range(3)])
    labels = torch.tensor([0, 2, 7])
    final = dict(class_logits=torch.randn(1, K, C + 1), mask_logits=torch.randn(1, K, 4, 4),
                 pixel_feature=torch.nn.functional.normalize(torch.randn(1, 8, 4, 4), dim=1))
    t = head.get_targets(final, [(labels, masks)], (H, W))
    sub = owner[::4, ::4].flatten()
    query, _, _ = head.assigner.assign(final['class_logits'][0], final['mask_logits'][0].flatten(1), labels,
                                       torch.stack([(sub == m).float() for m in range(3)]), sub == 3)
    for m in range(3):
        assert torch.equal(t['target_masks'][0, query[m]], (sub == m).float())
        assert t['target_labels'][0, query[m]] == labels[m] and t['matched'][0, query[m]]
    assert int(t['matched'].sum()) == 3 and (t['target_labels'][0][~t['matched'][0]] == C).all()
    assert torch.equal(t['void'][0], sub == 3)
    area = torch.stack([(sub == m).sum() for m in range(3)]).float()
    for n in range(16):
        expected = 0. if sub[n] == 3 else 16. / area[sub[n]]
        assert abs(t['inverse_area'][0, n].item() - float(expected)) < 1e-5

    calls = []
    assign = head.assigner.assign
    head.assigner.assign = lambda *a, **k: calls.append(1) or assign(*a, **k)
    outputs = dict(final=final, aux=[dict(final), dict(final)], sem_logits=None)
    losses = head.loss_by_outputs(outputs, [(labels, masks)], (H, W))
    assert len(calls) == 1 and 'd1.loss_dice' in losses
    # same prediction, same (shared) targets and pixel sample -> identical per-output losses
    torch.testing.assert_close(losses['d0.loss_insdis'], losses['loss_insdis'])
    torch.testing.assert_close(losses['d1.loss_cls'], losses['loss_cls'])


def test_detector_semantic_output(synthetic_root):
    model, cfg = build_model(PAN_SYN)
    model.eval()
    model.panoptic_fusion_head.test_cfg = dict(model.panoptic_fusion_head.test_cfg, semantic_on=True)
    _, data = _panoptic_batch(model, cfg, synthetic_root, 'val', n=1)
    with torch.no_grad():
        out = model.predict(data['inputs'], data['data_samples'])[0]
    assert out.pred_sem_seg.sem_seg.shape[-2:] == tuple(out.ori_shape)
    assert int(out.pred_sem_seg.sem_seg.max()) < 9


def test_cluster_maps_detector_pads_like_predict_and_crops_back(synthetic_root):
    """The cluster contract on the whole detector: the image batch is padded to the fixed size by
    the same rule as ``predict``, and the k-means map (argmax over the K centres of the final mask
    logits) is cropped back to the batch passed in."""
    from mmdet.structures import DetDataSample
    model, cfg = build_model(PAN_SYN)
    model.eval()
    _, data = _panoptic_batch(model, cfg, synthetic_root, 'val', n=1)
    x = data['inputs'][..., :96, :]  # smaller than the fixed 128x128
    (name, index), = model.cluster_maps(x)
    assert name == 'head' and index.dtype == torch.long and index.shape == (1, 24, 32)
    with torch.no_grad():
        _, mask_logits = model._forward(x, [DetDataSample(metainfo=dict(img_shape=(96, 128)))])
    assert mask_logits[-1].shape[-2:] == (32, 32)  # forward itself is unchanged: padded, uncropped
    assert torch.equal(index, mask_logits[-1].argmax(1)[:, :24, :32])
    assert 0 <= index.min() and index.max() < model.panoptic_head.num_queries
    with pytest.raises(ValueError, match='fixed input size 128x128 but got a batch of 128x160'):
        model.cluster_maps(torch.zeros(1, 3, 128, 160))


def test_cluster_maps_semantic_head_is_the_final_assignment(synthetic_root):
    model, cfg = build_model(SEG_SYN)
    model.eval()
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    feats = model.extract_feat(x)
    (name, index), = model.decode_head.cluster_maps(feats)
    with torch.no_grad():
        mask_logits = model.decode_head.forward_all(feats)['final']['mask_logits']  # (B, K, 32, 32)
    assert name == 'head' and index.dtype == torch.long and index.shape == (2, 32, 32)
    assert torch.equal(index, mask_logits.argmax(1))
    assert len(index.unique()) > 1  # distinct clusters: not an all-zeros map
