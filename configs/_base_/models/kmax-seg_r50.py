# kMaX-DeepLab as an mmseg semantic segmentor (ResNet-50), ADE20K sizes (spec kmax.md §7.3).
# The kMaX head is the panoptic one with every class as stuff; test inputs are padded to the
# fixed size by the data preprocessor (test_cfg size) and the padding is removed by mmseg.
image_size = (1281, 1281)
norm_cfg = dict(type='BN', requires_grad=True, eps=1e-3, momentum=0.01)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[127.5, 127.5, 127.5],
    std=[127.5, 127.5, 127.5],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=image_size,
    test_cfg=dict(size=image_size))
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='mmseg.ResNetV1c',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 1, 1),
        strides=(1, 2, 2, 2),
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        contract_dilation=True,
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://resnet50_v1c')),
    decode_head=dict(
        type='clusterseg.KMaXSegHead',
        in_channels=[256, 512, 1024, 2048],
        num_classes=150,
        ignore_index=255,
        input_size=image_size,
        num_queries=128,
        pixel_decoder=dict(
            type='clusterseg.KMaXPixelDecoder',
            channels=[512, 256, 128, 64],
            num_blocks=[1, 5, 1, 1],
            block_types=['axial', 'axial', 'bottleneck', 'bottleneck'],
            num_heads=8),
        transformer_decoder=dict(
            num_layers=[2, 2, 2], query_channels=256, bottleneck_channels=256, key_channels=128,
            value_channels=256, num_heads=8, ffn_channels=2048, embed_channels=128,
            drop_path=0.0),  # ADE20K: no drop path
        aux_semantic_head=dict(aspp_channels=256, low_level_channels=(64, 32), decoder_channels=256),
        assigner=dict(type='clusterseg.KMaXHungarianAssigner'),
        loss=dict(type='clusterseg.KMaXLoss', class_weight=3.0, dice_weight=3.0, mask_weight=0.3,
                  insdis_weight=1.0, aux_semantic_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
