# Synthetic-data sibling of pacahead_psvit-tiny_8xb2-160k_ade20k-512x512.py (CPU, minutes).
_base_ = [
    '../_base_/models/pacahead_ade20k.py',
    '../_base_/datasets/synthetic_ade20k.py',
    '../_base_/schedules/schedule_synthetic_seg.py',
    '../_base_/default_runtime_mmseg.py',
]
model = dict(
    data_preprocessor=dict(size=(128, 128)),
    backbone=dict(type='clusterseg.PSViT', arch='tiny', img_size=128, out_type='featmap', out_indices=(0, 1, 2, 3), drop_path_rate=0.1),
    decode_head=dict(in_channels=[96, 96, 192, 288], num_classes=8))
