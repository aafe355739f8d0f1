# Synthetic-data sibling of kmax-deeplab_r50_32xb2-150k_coco-panoptic-1281x1281.py: the same model
# family shrunk (ResNet-18 with 16 base channels, small pixel decoder, 16 clusters) on the synthetic
# COCO panoptic set (5 things + 4 stuff, 96-128 px), trained from scratch on a CPU in minutes.
_base_ = [
    '../_base_/models/kmax-deeplab_r50.py',
    '../_base_/datasets/synthetic_coco_panoptic.py',
    '../_base_/default_runtime_mmdet.py',
]
image_size = (128, 128)
# the fixed-size recipe of the 1281x1281 config: the longer side goes to 128 (any aspect ratio, e.g.
# a custom set's 640x480 images: configs/custom/), the model pads to 128x128. The dataset base's
# (213, 128) scale would make a non-square image wider than 128, which the fixed size refuses. On
# the square synthetic images both give the same 128x128.
backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadPanopticAnnotations', backend_args=backend_args),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadPanopticAnnotations', backend_args=backend_args),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
model = dict(
    input_size=image_size,
    backbone=dict(depth=18, base_channels=16, init_cfg=None),
    panoptic_head=dict(
        in_channels=[16, 32, 64, 128],
        num_things_classes=5,
        num_stuff_classes=4,
        num_queries=16,
        pixel_decoder=dict(channels=[16, 8, 8, 8], num_blocks=[1, 1, 1, 1], num_heads=2),
        transformer_decoder=dict(
            num_layers=[1, 1, 1], query_channels=32, bottleneck_channels=32, key_channels=16,
            value_channels=32, num_heads=2, ffn_channels=64, embed_channels=16, drop_path=0.0),
        aux_semantic_head=dict(aspp_channels=16, low_level_channels=(8, 8), decoder_channels=16),
        loss=dict(insdis_sample_k=256, aux_semantic_sample_k=256)),
    panoptic_fusion_head=dict(num_things_classes=5, num_stuff_classes=4),
    # the synthetic classes are easy to tell apart but a short run is not confident yet
    test_cfg=dict(class_threshold_thing=0.3, class_threshold_stuff=0.3))
train_dataloader = dict(batch_size=2, batch_sampler=None, sampler=dict(type='InfiniteSampler', shuffle=True),
                        dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(type='IterBasedTrainLoop', max_iters=300, val_interval=300)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    paramwise_cfg=dict(
        custom_keys={
            'cluster_centers': dict(decay_mult=0.),
            '_rpe': dict(decay_mult=0.),
            # the mask-logit temperature (a 1-channel BN, gamma 0.1 at init) needs thousands of
            # iterations to sharpen the softmax over clusters; speed it up for a 300-iter run
            'pixel_space_mask_batch_norm': dict(lr_mult=10.),
        },
        norm_decay_mult=0., bias_decay_mult=0.))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(type='PolyLR', power=0.9, eta_min=0., by_epoch=False, begin=20, end=300),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=300, max_keep_ckpts=1))
log_processor = dict(type='LogProcessor', window_size=10, by_epoch=False)
