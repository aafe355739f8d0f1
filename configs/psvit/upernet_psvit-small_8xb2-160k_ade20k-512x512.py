# UperNet + PSViT-small, ADE20K 512x512 160k: the tiny recipe
# (upernet_psvit-tiny_8xb2-160k_ade20k-512x512.py) with the small backbone.
_base_ = './upernet_psvit-tiny_8xb2-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        arch='small',
        init_cfg=dict(checkpoint='work_dirs/psvit-small_8xb128-300e_in1k/epoch_300.pth')),
    decode_head=dict(in_channels=[192, 192, 384, 576]),
    auxiliary_head=dict(in_channels=384))
