# PaCa head + PaCa-ViT-base-teacher, ADE20K 512x512 160k: the tiny recipe with another backbone.
_base_ = './pacahead_pacavit-tiny_8xb2-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        arch='base-teacher',
        drop_path_rate=0.1,
        num_clusters=[200, 200, 200, 200],
        pretrained_ignore_keys=[r'paca_teacher\.to_clusters'],
        init_cfg=dict(checkpoint='https://github.com/iVMCL/PaCaViT/releases/download/pacavit/IMNET_224_pacavit_convmixer_base_100.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 512]))
# the teacher predicts the clusters: its output layers are the re-initialised ones
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={
    '_delete_': True,
    'norm': dict(decay_mult=0.),
    'paca_teacher.to_clusters': dict(lr_mult=10.),
    'head': dict(lr_mult=10.)}))
