# Mask R-CNN + PaCa-ViT-tiny on your own COCO-format instance set (docs/en/custom_dataset.md):
# data/my_coco/{train,val}/ images and annotations/instances_{train,val}.json.
# The model and the 12-epoch schedule are those of the CPU-sized synthetic sibling.
_base_ = '../pacavit/mask-rcnn_pacavit-tiny_fpn_1xb4-12e_synthetic-coco-128x128.py'

data_root = 'data/my_coco/'
# the json's category names, in the json's category order (labels follow that order)
metainfo = dict(classes=('car', 'person'), palette=[(0, 0, 142), (220, 20, 60)])
train_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/')))
val_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
model = dict(roi_head=dict(bbox_head=dict(num_classes=2), mask_head=dict(num_classes=2)))
