# Mask R-CNN + PaCa-ViT-tiny, COCO 1x with the DETR-style multi-scale crop ("mstrain_480_800")
# (spec pacavit.md §4.2): AdamW lr 1e-4, wd 0.05 (none on norms), 12 epochs, 8 GPUs x 2 images.
_base_ = [
    '../_base_/models/mask-rcnn_fpn.py',
    '../_base_/datasets/coco_instance.py',
    '../_base_/schedules/schedule_1x.py',
    '../_base_/default_runtime_mmdet.py',
]
model = dict(
    backbone=dict(
        type='clusterseg.PaCaViT',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='https://github.com/iVMCL/PaCaViT/releases/download/pacavit/IMNET_224_pacavit_tiny_p2cconv_100_0.pth')),
    neck=dict(in_channels=[96, 192, 320, 384]))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize',
                  scales=[(1333, s) for s in range(480, 801, 32)], keep_ratio=True)],
            [dict(type='RandomChoiceResize', scales=[(1333, 400), (1333, 500), (1333, 600)],
                  keep_ratio=True),
             dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600),
                  allow_negative_crop=True),
             dict(type='RandomChoiceResize',
                  scales=[(1333, s) for s in range(480, 801, 32)], keep_ratio=True)],
        ]),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys=dict(norm=dict(decay_mult=0.))))
