# Runtime for mmpretrain (ImageNet classification) configs.
default_scope = 'mmpretrain'
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
)
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
# clusterseg's runtime safety (clusterseg/engine/patches.py: weights_only allowlist for every
# checkpoint scheme, strict test/inference loads, atomic checkpoint writes, empty-dataset errors):
# reading this config installs it (also for the stock inferencers, which build no hooks), and
# building a runner from it does too (RuntimeSafetyHook: also where custom_imports is replaced)
custom_imports = dict(imports=['clusterseg.engine.install_patches'], allow_failed_imports=False)
# RuntimeSafetyHook: see above; NonFiniteLossHook: stop with the iteration and the loss name when
# a loss becomes NaN/inf (the last good checkpoint is kept)
custom_hooks = [dict(type='clusterseg.RuntimeSafetyHook'),
                dict(type='clusterseg.NonFiniteLossHook')]
