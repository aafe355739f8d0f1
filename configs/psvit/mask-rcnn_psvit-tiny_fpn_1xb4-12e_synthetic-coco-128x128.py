# Synthetic-data sibling of mask-rcnn_psvit-tiny_fpn_1x_coco.py: the same detector on the
# synthetic COCO-format set (5 thing classes, 128x128), trained from scratch on a CPU in minutes.
_base_ = [
    '../_base_/models/mask-rcnn_fpn.py',
    '../_base_/datasets/synthetic_coco_instance.py',
    '../_base_/schedules/schedule_synthetic_det.py',
    '../_base_/default_runtime_mmdet.py',
]
model = dict(
    backbone=dict(type='clusterseg.PSViT', arch='tiny', img_size=128,
                  out_type='featmap', out_indices=(0, 1, 2, 3), drop_path_rate=0.1),
    neck=dict(in_channels=[96, 96, 192, 288]),
    rpn_head=dict(anchor_generator=dict(scales=[4])),  # objects of 10-60 px
    roi_head=dict(bbox_head=dict(num_classes=5), mask_head=dict(num_classes=5)))
train_dataloader = dict(batch_size=4)
