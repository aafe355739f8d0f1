# Synthetic COCO-format panoptic segmentation set
# (tools/misc/make_synthetic_data.py --task panoptic).
# Mirrors mmdet's configs/_base_/datasets/coco_panoptic.py at 128x128 scale.
dataset_type = 'CocoPanopticDataset'
data_root = 'data/synthetic_coco/'
# == clusterseg.datasets.synthetic.SYNTH_COCO_PANOPTIC_{THING,STUFF}_CLASSES (a test checks it).
# Real COCO panoptic ids: things 1, 3, 13, 37, 38; stuff 149, 187, 193, 199.
# mmdet numbers classes in json category order (things first, then stuff, as listed here),
# and the models assume labels 0..num_things-1 are the things.
thing_classes = ('person', 'car', 'stop sign', 'sports ball', 'kite')
stuff_classes = ('road', 'sky-other-merged', 'grass-merged', 'wall-other-merged')
metainfo = dict(
    classes=thing_classes + stuff_classes, thing_classes=thing_classes, stuff_classes=stuff_classes)
img_scale = (213, 128)  # (1333, 800) scaled so that 128x128 images keep their size
backend_args = None

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadPanopticAnnotations', backend_args=backend_args),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='LoadPanopticAnnotations', backend_args=backend_args),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]

train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/panoptic_train2017.json',
        data_prefix=dict(img='train2017/', seg='annotations/panoptic_train2017/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/panoptic_val2017.json',
        data_prefix=dict(img='val2017/', seg='annotations/panoptic_val2017/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader

# CocoPanopticMetric needs the `panopticapi` package.
val_evaluator = dict(
    type='CocoPanopticMetric',
    ann_file=data_root + 'annotations/panoptic_val2017.json',
    seg_prefix=data_root + 'annotations/panoptic_val2017/',
    backend_args=backend_args)
test_evaluator = val_evaluator
