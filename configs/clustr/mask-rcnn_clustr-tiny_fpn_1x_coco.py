# Mask R-CNN + ClusTR-tiny, COCO 1x (our choice, the paper's detection setting is unknown: PVTv2's
# Mask R-CNN 1x): single-scale 1333x800 training, AdamW lr 1e-4, wd 1e-4, 12 epochs, steps at 8 and
# 11, 8 GPUs x 2 images, stochastic depth 0.1. Clustering keeps M = N / sr^2 at every input size and
# runs DPC-kNN blockwise (exact, no N x N matrix). No released ImageNet weights exist: the backbone
# starts from our own clustr-tiny_8xb128-300e_in1k checkpoint (its backbone.* keys).
_base_ = [
    '../_base_/models/mask-rcnn_fpn.py',
    '../_base_/datasets/coco_instance.py',
    '../_base_/schedules/schedule_1x.py',
    '../_base_/default_runtime_mmdet.py',
]
model = dict(
    backbone=dict(
        type='clusterseg.ClusTR',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='work_dirs/clustr-tiny_8xb128-300e_in1k/epoch_300.pth')),
    neck=dict(in_channels=[64, 128, 256, 512]))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.0001))
