# Synthetic-data sibling of upernet_pacavit-tiny_8xb2-160k_ade20k-512x512.py (CPU, minutes).
_base_ = [
    '../_base_/models/upernet_ade20k.py',
    '../_base_/datasets/synthetic_ade20k.py',
    '../_base_/schedules/schedule_synthetic_seg.py',
    '../_base_/default_runtime_mmseg.py',
]
model = dict(
    data_preprocessor=dict(size=(128, 128)),
    backbone=dict(
        type='clusterseg.PaCaViT',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        # the reference's downstream_cluster_num: 200 clusters in stages 1-3 for ADE20K; the
        # ImageNet checkpoints have 100, so their last clustering conv is re-initialised
        num_clusters=[200, 200, 200, 0],
        pretrained_ignore_keys=[r'attn\.clustering\.clustering\.4\.weight']),
    decode_head=dict(in_channels=[96, 192, 320, 384], channels=128, num_classes=8),
    auxiliary_head=dict(in_channels=320, channels=64, num_classes=8))
