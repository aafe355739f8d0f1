# kMaX-DeepLab ResNet-50 as a semantic segmentor on ADE20K (mmseg), with kMaX's ADE20K recipe
# (spec kmax.md §4): 1281x1281 fixed input, scale jitter 0.5-2.0, batch 64 (32 GPUs x 2), AdamW
# lr 5e-4 wd 0.05, backbone lr x0.1, 5k warmup + poly(0.9), 100k iters, no drop path.
# The authors publish panoptic ADE20K models only (their mIoU is the panoptic model's semantic
# inference, 45.3 at 1281): this semantic-only training has no published reference number.
_base_ = [
    '../_base_/models/kmax-seg_r50.py',
    '../_base_/datasets/ade20k.py',
    '../_base_/default_runtime_mmseg.py',
]
image_size = (1281, 1281)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=image_size, cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),  # longer side -> 1281, then padding
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
train_dataloader = dict(batch_size=2, num_workers=4, dataset=dict(pipeline=train_pipeline))
# kMaX runs at one fixed input size (every batch is padded to image_size, larger images are an
# error), so the base's multi-scale TTA cannot apply: --tta averages the flips at this size.
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=image_size, keep_ratio=True)],
        [dict(type='RandomFlip', prob=0., direction='horizontal'),
         dict(type='RandomFlip', prob=1., direction='horizontal')],
        [dict(type='LoadAnnotations', reduce_zero_label=True)],
        [dict(type='PackSegInputs')]])
]
val_dataloader = dict(batch_size=1, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

max_iters = 100000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=5000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-4, weight_decay=0.05, betas=(0.9, 0.999)),
    paramwise_cfg=dict(
        custom_keys={'backbone': dict(lr_mult=0.1), 'cluster_centers': dict(decay_mult=0.),
                     '_rpe': dict(decay_mult=0.)},
        norm_decay_mult=0., bias_decay_mult=0.))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=5000),
    dict(type='PolyLR', power=0.9, eta_min=0., by_epoch=False, begin=5000, end=max_iters),
]
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=5000, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
sync_bn = 'torch'
