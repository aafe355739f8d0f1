# Synthetic-data sibling of pacahead_clustr-tiny_8xb2-160k_ade20k-512x512.py: the same model on the
# synthetic ADE20K-format set (8 classes, 128x128), trained from scratch on a CPU in minutes.
_base_ = [
    '../_base_/models/pacahead_ade20k.py',
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
    decode_head=dict(in_channels=[64, 128, 256, 512], num_classes=8))
