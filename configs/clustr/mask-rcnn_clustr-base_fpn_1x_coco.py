# ClusTR-base, Mask R-CNN COCO: the tiny recipe (mask-rcnn_clustr-tiny_fpn_1x_coco.py) with the base backbone.
_base_ = './mask-rcnn_clustr-tiny_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        arch='base',
        init_cfg=dict(checkpoint='work_dirs/clustr-base_8xb128-300e_in1k/epoch_300.pth')),
    neck=dict(in_channels=[64, 128, 320, 512]))
