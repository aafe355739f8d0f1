# UperNet + PSViT-tiny, ADE20K 512x512, 160k iterations, 8 GPUs x 2 (the Swin / PaCa-ViT UperNet
# recipe): AdamW lr 6e-5, wd 0.01 (none on norms, position embedding, cls token), warm-up 1500
# iterations then poly(1.0). Dense outputs are our design [R] (docs/en/psvit.md).
_base_ = [
    '../_base_/models/upernet_ade20k.py',
    '../_base_/datasets/ade20k.py',
    '../_base_/schedules/schedule_160k.py',
    '../_base_/default_runtime_mmseg.py',
]
model = dict(
    backbone=dict(
        type='clusterseg.PSViT',
        arch='tiny',
        img_size=224,  # the ImageNet grid; the position embedding is interpolated per input
        out_type='featmap',  # 4 levels, strides 4/8/16/32, channels [C0, C0, C1, C2]
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='work_dirs/psvit-tiny_8xb128-300e_in1k/epoch_300.pth')),
    decode_head=dict(in_channels=[96, 96, 192, 288], num_classes=150),
    auxiliary_head=dict(in_channels=192, num_classes=150))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0.0, custom_keys={
        'pos_embed': dict(decay_mult=0.), 'cls_token': dict(decay_mult=0.)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, begin=1500, end=160000, by_epoch=False),
]
