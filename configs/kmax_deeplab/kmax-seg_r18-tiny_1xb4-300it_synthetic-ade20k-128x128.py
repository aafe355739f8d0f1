# Synthetic-data sibling of kmax-seg_r50_32xb2-100k_ade20k-1281x1281.py: a shrunk kMaX head
# (ResNet-18 with 16 base channels, 16 clusters) on the synthetic ADE20K set (8 classes), trained
# from scratch on a CPU in minutes.
_base_ = [
    '../_base_/models/kmax-seg_r50.py',
    '../_base_/datasets/synthetic_ade20k.py',
    '../_base_/default_runtime_mmseg.py',
    '../_base_/schedules/schedule_synthetic_seg.py',
]
image_size = (128, 128)
model = dict(
    data_preprocessor=dict(size=image_size, test_cfg=dict(size=image_size)),
    backbone=dict(type='mmseg.ResNet', depth=18, base_channels=16, init_cfg=None, contract_dilation=False),
    decode_head=dict(
        in_channels=[16, 32, 64, 128],
        num_classes=8,
        input_size=image_size,
        num_queries=16,
        pixel_decoder=dict(channels=[16, 8, 8, 8], num_blocks=[1, 1, 1, 1], num_heads=2),
        transformer_decoder=dict(
            num_layers=[1, 1, 1], query_channels=32, bottleneck_channels=32, key_channels=16,
            value_channels=32, num_heads=2, ffn_channels=64, embed_channels=16, drop_path=0.0),
        aux_semantic_head=dict(aspp_channels=16, low_level_channels=(8, 8), decoder_channels=16),
        loss=dict(insdis_sample_k=256, aux_semantic_sample_k=256)))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
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
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
