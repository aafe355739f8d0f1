# PSViT-base on ImageNet-1k: the tiny recipe (psvit-tiny_8xb128-300e_in1k.py, DeiT without
# distillation [R, spec psvit.md §3]) with the base backbone.
_base_ = './psvit-tiny_8xb128-300e_in1k.py'
model = dict(backbone=dict(arch='base'), head=dict(in_channels=1152))
