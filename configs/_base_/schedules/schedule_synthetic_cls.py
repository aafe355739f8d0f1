# A short mmpretrain schedule for the synthetic ImageNet-format set: trains on CPU in minutes.
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=1)
]
train_cfg = dict(by_epoch=True, max_epochs=10, val_interval=10)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=32)
# default_hooks live in default_runtime_mmdet/mmpretrain.py (a key may come from one base only);
# the synthetic configs shorten the logging and checkpoint intervals themselves.
