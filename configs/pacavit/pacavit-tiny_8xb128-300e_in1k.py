# PaCa-ViT-tiny on ImageNet-1k (reference: pacavit_tiny_p2cconv_100_0); recipe of spec pacavit.md §3:
# 300 epochs, 8 GPUs x 128, AdamW lr 5e-4 x B/512, cosine, 5 warm-up epochs, RandAugment m9,
# Mixup 0.8 / CutMix 1.0, label smoothing 0.1, random erasing 0.25; eval crop_pct 0.9 bicubic.
_base_ = [
    '../_base_/datasets/imagenet_bs128_deit_224.py',
    '../_base_/schedules/imagenet_bs1024_adamw_300e.py',
    '../_base_/default_runtime_mmpretrain.py',
]
model = dict(
    type='ImageClassifier',
    backbone=dict(type='clusterseg.PaCaViT', arch='tiny', drop_path_rate=0.1, out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=384,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=.02, bias=0.)]),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=248, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
