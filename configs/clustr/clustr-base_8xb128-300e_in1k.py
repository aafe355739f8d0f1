# ClusTR-base, ImageNet-1k: the tiny recipe (clustr-tiny_8xb128-300e_in1k.py) with the base backbone.
_base_ = './clustr-tiny_8xb128-300e_in1k.py'
optim_wrapper = dict(clip_grad=dict(max_norm=1.0))
model = dict(backbone=dict(arch='base', drop_path_rate=0.3))
