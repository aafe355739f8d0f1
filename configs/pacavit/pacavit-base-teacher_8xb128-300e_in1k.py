# PaCa-ViT-base-teacher on ImageNet-1k (reference: pacavit_convmixer_base_100): the tiny recipe with another backbone.
_base_ = './pacavit-tiny_8xb128-300e_in1k.py'
model = dict(backbone=dict(arch='base-teacher', drop_path_rate=0.1), head=dict(in_channels=512))
