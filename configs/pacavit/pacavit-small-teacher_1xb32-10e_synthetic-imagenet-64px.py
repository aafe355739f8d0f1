# Synthetic-data sibling of pacavit-small-teacher_8xb128-300e_in1k.py (CPU, minutes).
_base_ = './pacavit-tiny_1xb32-10e_synthetic-imagenet-64px.py'
model = dict(backbone=dict(arch='small-teacher', drop_path_rate=0.1), head=dict(in_channels=384))
