# Ablation (spec pacavit.md §4.1): PaCa head + PaCa-ViT-small, only the clusters changed (the same M
# as the ImageNet ablation checkpoint it starts from, so no layer is re-initialised).
_base_ = './pacahead_pacavit-small_8xb2-160k_ade20k-512x512.py'
model = dict(backbone=dict(num_clusters=[100, 81, 64, 49], pretrained_ignore_keys=[], init_cfg=dict(checkpoint='https://github.com/iVMCL/PaCaViT/releases/download/pacavit/IMNET_224_pacavit_small_p2cconv_100_49.pth')))
