# Synthetic-data sibling of mask-rcnn_pacavit-small-mlp_fpn_ms-1x_coco.py (CPU, minutes).
_base_ = './mask-rcnn_pacavit-tiny_fpn_1xb4-12e_synthetic-coco-128x128.py'
model = dict(backbone=dict(arch='small-mlp'), neck=dict(in_channels=[96, 192, 320, 384]))
