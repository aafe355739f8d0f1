# Synthetic-data sibling of upernet_psvit-tiny_8xb2-160k_ade20k-512x512.py (CPU, minutes).
_base_ = [
    '../_base_/models/upernet_ade20k.py',
    '../_base_/datasets/synthetic_ade20k.py',
    '../_base_/schedules/schedule_synthetic_seg.py',
    '../_base_/default_runtime_mmseg.py',
]
model = dict(
    data_preprocessor=dict(size=(128, 128)),
    backbone=dict(
        type='clusterseg.PSViT',
        arch='tiny',
        img_size=128,
        out_type='featmap',  # 4 levels, strides 4/8/16/32, channels [C0, C0, C1, C2]
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1),
    decode_head=dict(in_channels=[96, 96, 192, 288], channels=128, num_classes=8),
    auxiliary_head=dict(in_channels=192, channels=64, num_classes=8))
