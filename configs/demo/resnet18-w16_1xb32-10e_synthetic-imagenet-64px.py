# A stock mmpretrain ResNet-18 (16 base channels) trained from scratch on the synthetic
# ImageNet-format set; trains on CPU in minutes.
_base_ = [
    '../_base_/datasets/synthetic_imagenet.py',
    '../_base_/schedules/schedule_synthetic_cls.py',
    '../_base_/default_runtime_mmpretrain.py',
]
num_classes = 8  # len(clusterseg.datasets.synthetic.SYNTH_IMAGENET_CLASSES); a test checks it
model = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNet', depth=18, base_channels=16, num_stages=4, out_indices=(3, ),
                  style='pytorch'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=num_classes,
        in_channels=128,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5)))
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=5, max_keep_ckpts=2))
