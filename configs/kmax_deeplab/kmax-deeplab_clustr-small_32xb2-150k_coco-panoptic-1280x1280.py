# kMaX-DeepLab with a clustering backbone: ClusTR-small under the kMaX COCO recipe.
# Not in the kMaX paper (no reference number); 1280x1280 so that every stride is exact. No released
# ClusTR ImageNet weights exist: the backbone starts from our own clustr-small_8xb128-300e_in1k
# checkpoint (its backbone.* keys), as in configs/clustr.
_base_ = ['./kmax-deeplab_convnext-t_32xb2-150k_coco-panoptic-1280x1280.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='clusterseg.ClusTR',
        arch='small',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='work_dirs/clustr-small_8xb128-300e_in1k/epoch_300.pth')),
    panoptic_head=dict(in_channels=[64, 128, 256, 512]))
