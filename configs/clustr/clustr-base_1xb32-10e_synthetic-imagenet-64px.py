# ClusTR-base, ImageNet-1k: the tiny synthetic-data sibling (clustr-tiny_1xb32-10e_synthetic-imagenet-64px.py) with the base backbone.
_base_ = './clustr-tiny_1xb32-10e_synthetic-imagenet-64px.py'
model = dict(backbone=dict(arch='base', drop_path_rate=0.3))
