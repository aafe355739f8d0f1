# Synthetic-data sibling of pacavit-base_8xb128-300e_in1k.py (CPU, minutes).
_base_ = './pacavit-tiny_1xb32-10e_synthetic-imagenet-64px.py'
model = dict(backbone=dict(arch='base', drop_path_rate=0.5), head=dict(in_channels=512))
