# PSViT-small on ImageNet-1k with the DeiT recipe (no distillation) [R, spec psvit.md §3]:
# 300 epochs, 8 GPUs x 128, AdamW lr 5e-4 x B/512, wd 0.05, cosine, 5 warm-up epochs,
# RandAugment m9-mstd0.5, Mixup 0.8 / CutMix 1.0, label smoothing 0.1, random erasing 0.25,
# repeated augmentation, stochastic depth 0.1, 224x224 (eval: resize 256, center crop 224).
_base_ = [
    '../_base_/datasets/imagenet_bs128_deit_224.py',
    '../_base_/schedules/imagenet_bs1024_adamw_300e.py',
    '../_base_/default_runtime_mmpretrain.py',
]
model = dict(
    type='ImageClassifier',
    backbone=dict(type='clusterseg.PSViT', arch='small', img_size=224, out_type='cls_token',
                  drop_path_rate=0.1),
    neck=None,
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=1000,
        in_channels=576,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=.02)]),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))
train_dataloader = dict(sampler=dict(type='RepeatAugSampler', shuffle=True))
