# Synthetic-data sibling of upernet_pacavit-base_8xb2-160k_ade20k-512x512.py (CPU, minutes).
_base_ = './upernet_pacavit-tiny_1xb4-300it_synthetic-ade20k-128x128.py'
model = dict(backbone=dict(arch='base'), decode_head=dict(in_channels=[96, 192, 384, 512]),
             auxiliary_head=dict(in_channels=384))
