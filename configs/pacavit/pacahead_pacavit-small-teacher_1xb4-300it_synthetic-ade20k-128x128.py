# Synthetic-data sibling of pacahead_pacavit-small-teacher_8xb2-160k_ade20k-512x512.py (CPU, minutes).
_base_ = './pacahead_pacavit-tiny_1xb4-300it_synthetic-ade20k-128x128.py'
model = dict(backbone=dict(arch='small-teacher', drop_path_rate=0.1, num_clusters=[200, 200, 200, 200]),
             decode_head=dict(in_channels=[96, 192, 320, 384]))
