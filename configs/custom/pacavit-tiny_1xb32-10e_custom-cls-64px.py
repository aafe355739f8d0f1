# PaCa-ViT-tiny classifier on your own ImageNet-style folder tree (docs/en/custom_dataset.md):
# data/my_cls/{train,val}/<class name>/*.jpg, one folder per class.
# The model and the 10-epoch schedule are those of the CPU-sized synthetic sibling.
_base_ = '../pacavit/pacavit-tiny_1xb32-10e_synthetic-imagenet-64px.py'

data_root = 'data/my_cls'
# labels are the indices of the sorted folder names: list the classes in that order
metainfo = dict(classes=('bicycle', 'car', 'person'))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=56),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=64, edge='short'),
    dict(type='CenterCrop', crop_size=56),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    dataset=dict(
        _delete_=True,  # the base's ImageNet dataset has keys CustomDataset does not take
        type='CustomDataset',
        data_root=data_root,
        data_prefix='train',
        metainfo=metainfo,
        pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root=data_root,
        data_prefix='val',
        metainfo=metainfo,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))  # top-5 needs at least 5 classes
test_evaluator = val_evaluator
model = dict(head=dict(num_classes=3))
data_preprocessor = dict(num_classes=3)  # for Mixup / CutMix
