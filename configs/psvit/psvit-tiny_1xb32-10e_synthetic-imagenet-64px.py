# Synthetic-data sibling of psvit-tiny_8xb128-300e_in1k.py: the same model on the synthetic
# ImageNet-format set (8 classes, 56 px crops: 7x7 patches -> 4x4 -> 2x2 tokens), a 10-epoch
# schedule that runs on a CPU in minutes.
_base_ = [
    '../_base_/datasets/synthetic_imagenet.py',
    '../_base_/schedules/schedule_synthetic_cls.py',
    '../_base_/default_runtime_mmpretrain.py',
]
model = dict(
    type='ImageClassifier',
    backbone=dict(type='clusterseg.PSViT', arch='tiny', img_size=56, out_type='cls_token',
                  drop_path_rate=0.1),
    neck=None,
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=8,
        in_channels=288,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=.02)]),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))
data_preprocessor = dict(num_classes=8)
