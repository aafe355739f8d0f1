# PaCa-ViT-base on ImageNet-1k (reference: pacavit_base_p2cconv_100_0): the tiny recipe with another backbone.
_base_ = './pacavit-tiny_8xb128-300e_in1k.py'
model = dict(backbone=dict(arch='base', drop_path_rate=0.5), head=dict(in_channels=512))
optim_wrapper = dict(clip_grad=dict(max_norm=1.0))  # the reference's base recipe
