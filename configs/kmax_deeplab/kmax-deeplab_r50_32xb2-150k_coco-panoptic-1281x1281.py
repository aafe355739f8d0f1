# kMaX-DeepLab, ResNet-50, COCO panoptic: the paper recipe (spec kmax.md §4).
# 1281x1281 fixed input, scale jitter 0.2-2.0, batch 64 (32 GPUs x 2), AdamW lr 5e-4 wd 0.05,
# backbone lr x0.1, 5k-iter linear warmup then poly(0.9), 150k iters, AMP.
# Not reproduced here: panoptic copy-paste augmentation (no mmdet transform exists for it).
_base_ = [
    '../_base_/models/kmax-deeplab_r50.py',
    '../_base_/datasets/coco_panoptic.py',
    '../_base_/default_runtime_mmdet.py',
]
image_size = (1281, 1281)
backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True, backend_args=backend_args),
    dict(type='LoadPanopticAnnotations', with_bbox=True, with_mask=True, with_seg=True,
         backend_args=backend_args),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.2, 2.0), keep_ratio=True),
    dict(type='PhotoMetricDistortion'),
    dict(type='RandomCrop', crop_size=image_size, crop_type='absolute', recompute_bbox=True,
         allow_negative_crop=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=image_size, keep_ratio=True),  # longer side -> 1281, then batch padding
    dict(type='LoadPanopticAnnotations', backend_args=backend_args),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(
    batch_size=2, num_workers=4, sampler=dict(type='InfiniteSampler', shuffle=True),
    batch_sampler=None, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
# kMaX reports instance AP next to PQ: score the same predictions with CocoMetric as well
val_evaluator = [
    dict(type='CocoPanopticMetric', ann_file='data/coco/annotations/panoptic_val2017.json',
         seg_prefix='data/coco/annotations/panoptic_val2017/', backend_args=backend_args),
    dict(type='CocoMetric', ann_file='data/coco/annotations/instances_val2017.json',
         metric=['bbox', 'segm'], backend_args=backend_args),
]
test_evaluator = val_evaluator

max_iters = 150000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=5000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-4, weight_decay=0.05, betas=(0.9, 0.999)),
    paramwise_cfg=dict(
        custom_keys={
            'backbone': dict(lr_mult=0.1),
            'cluster_centers': dict(decay_mult=0.),
            '_rpe': dict(decay_mult=0.),
        },
        norm_decay_mult=0.,
        bias_decay_mult=0.))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=5000),
    dict(type='PolyLR', power=0.9, eta_min=0., by_epoch=False, begin=5000, end=max_iters),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=5000, max_keep_ckpts=3))
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=False)
sync_bn = 'torch'
auto_scale_lr = dict(enable=False, base_batch_size=64)
