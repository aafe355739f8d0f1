# Mask R-CNN + PaCa-ViT-small-teacher, COCO 1x multi-scale: the tiny recipe with another backbone.
_base_ = './mask-rcnn_pacavit-tiny_fpn_ms-1x_coco.py'
model = dict(
    backbone=dict(arch='small-teacher', init_cfg=dict(checkpoint='https://github.com/iVMCL/PaCaViT/releases/download/pacavit/IMNET_224_pacavit_convmixer_small_100.pth')),
    neck=dict(in_channels=[96, 192, 320, 384]))
