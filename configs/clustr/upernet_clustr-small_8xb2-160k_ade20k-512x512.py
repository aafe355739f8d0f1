# ClusTR-small, UperNet ADE20K: the tiny recipe (upernet_clustr-tiny_8xb2-160k_ade20k-512x512.py) with the small backbone.
_base_ = './upernet_clustr-tiny_8xb2-160k_ade20k-512x512.py'
model = dict(
    backbone=dict(
        arch='small',
        init_cfg=dict(checkpoint='work_dirs/clustr-small_8xb128-300e_in1k/epoch_300.pth')))
