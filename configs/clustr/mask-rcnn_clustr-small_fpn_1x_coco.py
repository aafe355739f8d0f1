# ClusTR-small, Mask R-CNN COCO: the tiny recipe (mask-rcnn_clustr-tiny_fpn_1x_coco.py) with the small backbone.
_base_ = './mask-rcnn_clustr-tiny_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        arch='small',
        init_cfg=dict(checkpoint='work_dirs/clustr-small_8xb128-300e_in1k/epoch_300.pth')))
