# kMaX-DeepLab with a clustering backbone: PaCa-ViT-tiny (IN-1K) under the kMaX COCO recipe.
# Not in the kMaX paper (no reference number); 1280x1280 so that every stride is exact.
_base_ = ['./kmax-deeplab_convnext-t_32xb2-150k_coco-panoptic-1280x1280.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='clusterseg.PaCaViT',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='https://github.com/iVMCL/PaCaViT/releases/download/pacavit/IMNET_224_pacavit_tiny_p2cconv_100_0.pth')),
    panoptic_head=dict(in_channels=[96, 192, 320, 384]))
