# Ablation (spec pacavit.md §3, reference pacavit_small_p2cconv_100): PaCa-ViT-small with only the clusters changed.
_base_ = './pacavit-small_8xb128-300e_in1k.py'
model = dict(backbone=dict(num_clusters=[100, 100, 100, 100]))
