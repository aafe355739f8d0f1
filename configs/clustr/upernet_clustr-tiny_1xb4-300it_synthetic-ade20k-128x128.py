# Synthetic-data sibling of upernet_clustr-tiny_8xb2-160k_ade20k-512x512.py (CPU, minutes).
_base_ = [
    '../_base_/models/upernet_ade20k.py',
    '../_base_/datasets/synthetic_ade20k.py',
    '../_base_/schedules/schedule_synthetic_seg.py',
    '../_base_/default_runtime_mmseg.py',
]
model = dict(
    data_preprocessor=dict(size=(128, 128)),
    backbone=dict(
        type='clusterseg.ClusTR',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1),
    decode_head=dict(in_channels=[64, 128, 256, 512], channels=128, num_classes=8),
    auxiliary_head=dict(in_channels=256, channels=64, num_classes=8))
