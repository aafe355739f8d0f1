# ClusTR-base, Mask R-CNN COCO: the tiny synthetic-data sibling (mask-rcnn_clustr-tiny_fpn_1xb4-12e_synthetic-coco-128x128.py) with the base backbone.
_base_ = './mask-rcnn_clustr-tiny_fpn_1xb4-12e_synthetic-coco-128x128.py'
model = dict(backbone=dict(arch='base'), neck=dict(in_channels=[64, 128, 320, 512]))
