# PaCa-ViT-small-mlp on ImageNet-1k (reference: pacavit_small_p2cmlp_100_0): the tiny recipe with another backbone.
_base_ = './pacavit-tiny_8xb128-300e_in1k.py'
model = dict(backbone=dict(arch='small-mlp', drop_path_rate=0.1), head=dict(in_channels=384))
