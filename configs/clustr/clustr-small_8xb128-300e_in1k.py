# ClusTR-small, ImageNet-1k: the tiny recipe (clustr-tiny_8xb128-300e_in1k.py) with the small backbone.
_base_ = './clustr-tiny_8xb128-300e_in1k.py'
model = dict(backbone=dict(arch='small'))
