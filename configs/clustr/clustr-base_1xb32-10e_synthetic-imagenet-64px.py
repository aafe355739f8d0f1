# Synthetic-data sibling of clustr-base_8xb128-300e_in1k.py: same model, the synthetic
# ImageNet-format set (8 classes, 64 px, crop 56), a 10-epoch schedule that runs on a CPU in minutes.
_base_ = [
    '../_base_/datasets/synthetic_imagenet.py',
    '../_base_/schedules/schedule_synthetic_cls.py',
    '../_base_/default_runtime_mmpretrain.py',
]
model = dict(
    type='ImageClassifier',
    backbone=dict(type='clusterseg.ClusTR', arch='base', drop_path_rate=0.3, out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=8,
        in_channels=512,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=.02, bias=0.)]),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))
data_preprocessor = dict(num_classes=8)
