# ClusTR-small, Mask R-CNN COCO: the tiny synthetic-data sibling (mask-rcnn_clustr-tiny_fpn_1xb4-12e_synthetic-coco-128x128.py) with the small backbone.
_base_ = './mask-rcnn_clustr-tiny_fpn_1xb4-12e_synthetic-coco-128x128.py'
model = dict(backbone=dict(arch='small'))
