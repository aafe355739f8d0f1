# ClusTR-base, PaCa head ADE20K: the tiny recipe (pacahead_clustr-tiny_8xb2-160k_ade20k-512x512.py) with the base backbone.
_base_ = './pacahead_clustr-tiny_8xb2-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        arch='base',
        init_cfg=dict(checkpoint='work_dirs/clustr-base_8xb128-300e_in1k/epoch_300.pth')),
    decode_head=dict(in_channels=[64, 128, 320, 512]))
