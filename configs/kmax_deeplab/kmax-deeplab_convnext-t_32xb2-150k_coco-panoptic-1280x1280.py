# kMaX-DeepLab, ConvNeXt-T (IN-22K -> 1K, 384 px weights), COCO panoptic: the R50 recipe with
# drop_path_rate 0.3 (spec kmax.md §1.1, §4).
# The input is 1280x1280, not 1281: mmpretrain's ConvNeXt does not zero-pad before its
# downsampling layers as kMaX's does, so an odd size would drop the last row/column (1281 -> 320
# at stride 4 instead of 321). 1280 keeps every stride exact; results are not expected to differ.
_base_ = ['./kmax-deeplab_r50_32xb2-150k_coco-panoptic-1281x1281.py']
image_size = (1280, 1280)
checkpoint = ('https://download.openmmlab.com/mmclassification/v0/convnext/'
              'convnext-tiny_in21k-pre_3rdparty_in1k-384px_20221219-c1182362.pth')
model = dict(
    input_size=image_size,
    backbone=dict(
        _delete_=True,
        type='mmpretrain.ConvNeXt',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.3,
        layer_scale_init_value=1.0,
        gap_before_final_norm=False,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    panoptic_head=dict(in_channels=[96, 192, 384, 768]))
train_pipeline = [
    dict(type='LoadImageFromFile', to_float32=True),
    dict(type='LoadPanopticAnnotations', with_bbox=True, with_mask=True, with_seg=True),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.2, 2.0), keep_ratio=True),
    dict(type='PhotoMetricDistortion'),
    dict(type='RandomCrop', crop_size=image_size, crop_type='absolute', recompute_bbox=True,
         allow_negative_crop=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadPanopticAnnotations'),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'gamma': dict(decay_mult=0.)}))
