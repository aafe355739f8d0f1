# Mask R-CNN + PSViT-small, COCO 1x (1333x800, flip), AdamW lr 1e-4, wd 0.05 (none on norms,
# position embedding, cls token), 12 epochs, 8 GPUs x 2 images. PSViT was not evaluated on COCO
# by its authors: the multi-scale outputs (strides 4/8/16/32 = a x2 transposed conv on the first
# token stage + the three stages) are our design [R] (docs/en/psvit.md).
# Memory: attention is global, so a 1333x800 image has ~16.7k first-stage tokens; the layers whose
# map is shared materialise (B, h, N, N) maps -- expect a large footprint (see README).
_base_ = [
    '../_base_/models/mask-rcnn_fpn.py',
    '../_base_/datasets/coco_instance.py',
    '../_base_/schedules/schedule_1x.py',
    '../_base_/default_runtime_mmdet.py',
]
model = dict(
    backbone=dict(
        type='clusterseg.PSViT',
        arch='small',
        img_size=224,
        out_type='featmap',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='work_dirs/psvit-small_8xb128-300e_in1k/epoch_300.pth')),
    neck=dict(in_channels=[192, 192, 384, 576]))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, custom_keys={
        'pos_embed': dict(decay_mult=0.), 'cls_token': dict(decay_mult=0.)}))
