# PaCa head + PaCa-ViT-tiny on your own semantic segmentation set (docs/en/custom_dataset.md):
# images + PNG masks under data/my_seg, mask value = index of the class in `classes`, 255 = ignore.
# The model and the 300-iteration schedule are those of the CPU-sized synthetic sibling.
_base_ = '../pacavit/pacahead_pacavit-tiny_1xb4-300it_synthetic-ade20k-128x128.py'

data_root = 'data/my_seg'
metainfo = dict(
    classes=('sky', 'grass', 'road', 'car', 'person'),
    palette=[[70, 130, 180], [152, 251, 152], [128, 64, 128], [0, 0, 142], [220, 20, 60]])
crop_size = (128, 128)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),  # reduce_zero_label is taken from the dataset
    dict(type='RandomResize', scale=(512, 128), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(512, 128), keep_ratio=True),
    dict(type='LoadAnnotations'),  # after Resize: metrics at the original resolution
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    dataset=dict(
        type='BaseSegDataset',
        data_root=data_root,
        metainfo=metainfo,
        data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train'),
        img_suffix='.jpg',
        seg_map_suffix='.png',
        reduce_zero_label=False,  # True when 0 means "unlabelled" and classes start at 1
        pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        type='BaseSegDataset',
        data_root=data_root,
        metainfo=metainfo,
        data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
        img_suffix='.jpg',
        seg_map_suffix='.png',
        reduce_zero_label=False,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
model = dict(decode_head=dict(num_classes=5))  # == len(metainfo['classes'])
