# UperNet + PaCa-ViT-tiny, ADE20K 512x512, 160k iterations, 8 GPUs x 2 (spec pacavit.md §4.1):
# AdamW lr 6e-5, wd 0.01 (none on norms), warm-up 1500 iterations then poly(1.0).
_base_ = [
    '../_base_/models/upernet_ade20k.py',
    '../_base_/datasets/ade20k.py',
    '../_base_/schedules/schedule_160k.py',
    '../_base_/default_runtime_mmseg.py',
]
model = dict(
    backbone=dict(
        type='clusterseg.PaCaViT',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        # the reference's downstream_cluster_num: 200 clusters in stages 1-3 for ADE20K; the
        # ImageNet checkpoints have 100, so their last clustering conv is re-initialised
        num_clusters=[200, 200, 200, 0],
        pretrained_ignore_keys=[r'attn\.clustering\.clustering\.4\.weight'],
        init_cfg=dict(type='Pretrained', checkpoint='https://github.com/iVMCL/PaCaViT/releases/download/pacavit/IMNET_224_pacavit_tiny_p2cconv_100_0.pth')),
    decode_head=dict(in_channels=[96, 192, 320, 384], num_classes=150),
    auxiliary_head=dict(in_channels=320, num_classes=150))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, begin=1500, end=160000, by_epoch=False),
]
