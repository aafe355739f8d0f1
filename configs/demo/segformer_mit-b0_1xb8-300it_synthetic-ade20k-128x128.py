# The README demo (`make demo`): a stock mmseg SegFormer-B0 trained from scratch on the synthetic
# ADE20K-format set; trains in a few minutes on 2 CPU cores.
_base_ = [
    '../_base_/datasets/synthetic_ade20k.py',
    '../_base_/default_runtime_mmseg.py',
    '../_base_/schedules/schedule_synthetic_seg.py',
]
num_classes = 8  # len(clusterseg.datasets.synthetic.SYNTH_ADE20K_CLASSES); a test checks it
norm_cfg = dict(type='SyncBN', requires_grad=True)  # tools/ turn it into BN on a CPU-only machine
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=(128, 128))
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='MixVisionTransformer',
        in_channels=3,
        embed_dims=32,
        num_stages=4,
        num_layers=[2, 2, 2, 2],
        num_heads=[1, 2, 5, 8],
        patch_sizes=[7, 3, 3, 3],
        sr_ratios=[8, 4, 2, 1],
        out_indices=(0, 1, 2, 3),
        mlp_ratio=4,
        qkv_bias=True,
        drop_rate=0.0,
        attn_drop_rate=0.0,
        drop_path_rate=0.1),
    decode_head=dict(
        type='SegformerHead',
        in_channels=[32, 64, 160, 256],
        in_index=[0, 1, 2, 3],
        channels=128,
        dropout_ratio=0.1,
        num_classes=num_classes,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
train_dataloader = dict(batch_size=8)
