# ClusTR-small (reference ClusTR_b2) on ImageNet-1k, the DeiT/PVT recipe of spec clustr.md §3:
# 300 epochs, 8 GPUs x 128, AdamW lr 5e-4 x B/512 = 1e-3, wd 0.05 (none on norms / biases), cosine to
# 1e-5 after 5 warm-up epochs from 1e-6, RandAugment m9-mstd0.5, random erasing 0.25, Mixup 0.8 /
# CutMix 1.0 (switch 0.5), label smoothing 0.1, repeated augmentation, stochastic depth 0.1,
# no grad-clip, AMP, no EMA; eval: short side 256 (bicubic), center crop 224.
_base_ = [
    '../_base_/datasets/imagenet_bs128_deit_224.py',
    '../_base_/schedules/imagenet_bs1024_adamw_300e.py',
    '../_base_/default_runtime_mmpretrain.py',
]
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='clusterseg.ClusTR',
        arch='small',
        drop_path_rate=0.1,
        out_indices=(3, ),
        # 1 GiB distance blocks (the reference clusters B/4 images at once: 1.26 GB at B=128);
        # the block size changes memory and speed only, never the assignments
        max_block_elems=2**28),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=512,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=.02, bias=0.)]),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]))
train_dataloader = dict(sampler=dict(type='RepeatAugSampler', shuffle=True))
# the reference trains with torch.cuda.amp; DPC-kNN and the token weights run in fp32 regardless
optim_wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic')
