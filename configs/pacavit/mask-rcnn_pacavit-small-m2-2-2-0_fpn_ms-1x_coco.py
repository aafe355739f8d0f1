# Ablation (spec pacavit.md §4.2): Mask R-CNN + PaCa-ViT-small, only the clusters changed,
# initialised from the matching ImageNet ablation checkpoint.
_base_ = './mask-rcnn_pacavit-small_fpn_ms-1x_coco.py'
model = dict(backbone=dict(num_clusters=[2, 2, 2, 0], init_cfg=dict(checkpoint='https://github.com/iVMCL/PaCaViT/releases/download/pacavit/IMNET_224_pacavit_small_p2cconv_2_0.pth')))
