# kMaX-DeepLab (the shrunk ResNet-18 one) on your own COCO-format panoptic set
# (docs/en/custom_dataset.md): data/my_panoptic/{train,val}/ images,
# annotations/panoptic_{train,val}.json and the PNGs in annotations/panoptic_{train,val}/.
# The model and the 300-iteration schedule are those of the CPU-sized synthetic sibling.
_base_ = '../kmax_deeplab/kmax-deeplab_r18-tiny_1xb2-300it_synthetic-coco-panoptic-128x128.py'

data_root = 'data/my_panoptic/'
# things first, then stuff: the json's category order, which the labels follow
thing_classes = ('car', 'person')
stuff_classes = ('sky', 'grass', 'road')
metainfo = dict(
    classes=thing_classes + stuff_classes,
    thing_classes=thing_classes,
    stuff_classes=stuff_classes,
    palette=[(0, 0, 142), (220, 20, 60), (70, 130, 180), (152, 251, 152), (128, 64, 128)])
train_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/panoptic_train.json',
        data_prefix=dict(img='train/', seg='annotations/panoptic_train/')))
val_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/panoptic_val.json',
        data_prefix=dict(img='val/', seg='annotations/panoptic_val/')))
test_dataloader = val_dataloader
val_evaluator = dict(
    ann_file=data_root + 'annotations/panoptic_val.json',
    seg_prefix=data_root + 'annotations/panoptic_val/')
test_evaluator = val_evaluator
model = dict(
    panoptic_head=dict(num_things_classes=2, num_stuff_classes=3),
    panoptic_fusion_head=dict(num_things_classes=2, num_stuff_classes=3))
