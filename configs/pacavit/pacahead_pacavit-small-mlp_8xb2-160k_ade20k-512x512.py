# PaCa head + PaCa-ViT-small-mlp, ADE20K 512x512 160k: the tiny recipe with another backbone.
_base_ = './pacahead_pacavit-tiny_8xb2-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        arch='small-mlp',
        drop_path_rate=0.1,
        init_cfg=dict(checkpoint='https://github.com/iVMCL/PaCaViT/releases/download/pacavit/IMNET_224_pacavit_small_p2cmlp_100_0.pth')),
    decode_head=dict(in_channels=[96, 192, 320, 384]))
