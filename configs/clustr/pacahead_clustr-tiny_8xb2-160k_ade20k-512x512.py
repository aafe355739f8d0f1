# PaCa head + ClusTR-tiny, ADE20K 512x512, 160k iterations, 8 GPUs x 2 (our choice: the PaCa-ViT
# PaCa-head recipe): AdamW lr 6e-5, wd 0.01 (none on norms), lr x10 for the head, warm-up 1500
# iterations then poly(1.0), stochastic depth 0.1, single-scale test.
_base_ = [
    '../_base_/models/pacahead_ade20k.py',
    '../_base_/datasets/ade20k.py',
    '../_base_/schedules/schedule_160k.py',
    '../_base_/default_runtime_mmseg.py',
]
model = dict(
    backbone=dict(
        type='clusterseg.ClusTR',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='work_dirs/clustr-tiny_8xb128-300e_in1k/epoch_300.pth')),
    decode_head=dict(in_channels=[64, 128, 256, 512], num_classes=150))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={
        'norm': dict(decay_mult=0.),
        'decode_head': dict(lr_mult=10.)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, begin=1500, end=160000, by_epoch=False),
]
