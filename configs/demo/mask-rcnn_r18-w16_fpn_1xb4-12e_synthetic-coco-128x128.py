# A stock mmdet Mask R-CNN, shrunk to train on CPU in minutes on the synthetic COCO-format set:
# ResNet-18 with 16 base channels, 64-channel FPN, anchors sized for 128x128 images.
_base_ = [
    '../_base_/models/mask-rcnn_fpn.py',
    '../_base_/datasets/synthetic_coco_instance.py',
    '../_base_/schedules/schedule_synthetic_det.py',
    '../_base_/default_runtime_mmdet.py',
]
num_classes = 5  # len(clusterseg.datasets.synthetic.SYNTH_COCO_CLASSES); a test checks it
model = dict(
    backbone=dict(type='ResNet', depth=18, base_channels=16, num_stages=4, out_indices=(0, 1, 2, 3),
                  frozen_stages=-1, norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False,
                  style='pytorch', init_cfg=None),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64,
                  anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=num_classes),
        mask_roi_extractor=dict(out_channels=64),
        mask_head=dict(num_convs=2, in_channels=64, conv_out_channels=64, num_classes=num_classes)),
    train_cfg=dict(rpn_proposal=dict(nms_pre=500, max_per_img=200),
                   rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=200), rcnn=dict(max_per_img=50)))
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=4, max_keep_ckpts=2))
