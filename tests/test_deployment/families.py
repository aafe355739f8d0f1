"""One tiny model per family (the synthetic configs, shrunk), shared by the deployment, compile,
bf16 and GPU tests: the real config paths and model classes, widths of 16-64 and one block per
stage, so that exporting / compiling each takes seconds."""
import copy

import torch

# PaCa-ViT with 8 clusters in stages 1-3 and plain attention in stage 4 (M = 0), as the presets
PACA = dict(_delete_=True, embed_dims=[16, 32, 48, 64], depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4],
            num_clusters=[8, 8, 8, 0], clustering='conv')
CLUSTR = dict(_delete_=True, embed_dims=[16, 32, 32, 64], num_heads=[1, 1, 1, 2], depths=[1, 1, 1, 1])
# three stages (pooling after layers 1 and 3), every other layer sharing its predecessor's map
PSVIT = dict(_delete_=True, embed_dims=[32, 64, 96], num_heads=[1, 2, 3], depth=6, pool_after=[1, 3],
             share_attn=[0, 1, 0, 1, 0, 1])
SEG_IN = [16, 32, 48, 64]


def _cls(arch, channels):
    return dict(model=dict(backbone=dict(arch=arch, drop_path_rate=0.), head=dict(in_channels=channels)))


# name -> (config, --cfg-options, input (H, W), whether the graph follows other sizes)
FAMILIES = {
    'pacavit-cls': ('configs/pacavit/pacavit-tiny_1xb32-10e_synthetic-imagenet-64px.py',
                    _cls(PACA, 64), (64, 64), True),
    'clustr-cls': ('configs/clustr/clustr-tiny_1xb32-10e_synthetic-imagenet-64px.py',
                   _cls(CLUSTR, 64), (64, 64), False),
    'psvit-cls': ('configs/psvit/psvit-tiny_1xb32-10e_synthetic-imagenet-64px.py',
                  _cls(PSVIT, 96), (64, 64), True),
    'pacahead-seg': ('configs/pacavit/pacahead_pacavit-tiny_1xb4-300it_synthetic-ade20k-128x128.py',
                     dict(model=dict(backbone=dict(arch=PACA, num_clusters=[8, 8, 8, 0], drop_path_rate=0.),
                                     decode_head=dict(in_channels=SEG_IN, channels=16))),
                     (64, 64), True),
    # 64 px: a 2 x 2 map at stride 32 under PPM scales 1, 2, 3, 6 (not divisors: the adaptive pools)
    'upernet-seg': ('configs/pacavit/upernet_pacavit-tiny_1xb4-300it_synthetic-ade20k-128x128.py',
                    dict(model=dict(backbone=dict(arch=PACA, drop_path_rate=0.),
                                    decode_head=dict(in_channels=SEG_IN, channels=16),
                                    auxiliary_head=dict(in_channels=48, channels=16))),
                    (64, 64), True),
    'kmax-seg': ('configs/kmax_deeplab/kmax-seg_r18-tiny_1xb4-300it_synthetic-ade20k-128x128.py',
                 None, (128, 128), False),
    'kmax-panoptic': ('configs/kmax_deeplab/kmax-deeplab_r18-tiny_1xb2-300it_synthetic-coco-panoptic-128x128.py',
                      None, (128, 128), False),
}
BACKBONES = {'pacavit': 'pacavit-cls', 'clustr': 'clustr-cls', 'psvit': 'psvit-cls'}


def build(name, seed=0):
    """The family's model, random weights (seeded), eval mode, CPU."""
    from clusterseg.deploy.onnx import build_model_for_export
    config, options, _, _ = FAMILIES[name]
    torch.manual_seed(seed)
    return build_model_for_export(config, cfg_options=copy.deepcopy(options))


def inputs(name, batch=1, seed=1, shape=None):
    """A preprocessed-looking batch (B, 3, H, W) ~ N(0, 1) at the family's size."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, *(shape or FAMILIES[name][2]), generator=g)


def train_batch(name, batch=2, seed=0):
    """A ``train_step`` / ``data_preprocessor`` batch for the family: uint8 images at its size and
    ground truth in the library's data sample (8 classes; kMaX panoptic: 5 things + 4 stuff)."""
    from mmengine.structures import InstanceData, PixelData
    g = torch.Generator().manual_seed(seed)
    H, W = FAMILIES[name][2]
    imgs = [torch.randint(0, 256, (3, H, W), generator=g, dtype=torch.uint8) for _ in range(batch)]
    meta = dict(img_shape=(H, W), ori_shape=(H, W), pad_shape=(H, W), scale_factor=(1., 1.))
    samples = []
    for _ in range(batch):
        if name.endswith('-cls'):
            from mmpretrain.structures import DataSample
            s = DataSample(metainfo=meta).set_gt_label(int(torch.randint(0, 8, (1, ), generator=g)))
        elif name == 'kmax-panoptic':
            from mmdet.structures import DetDataSample
            from mmdet.structures.mask import BitmapMasks
            s = DetDataSample(metainfo=meta)
            masks = torch.zeros(2, H, W, dtype=torch.uint8)
            masks[0, H // 2:, :W // 2] = 1  # two things in the bottom half
            masks[1, H // 2:, W // 2:] = 1
            s.gt_instances = InstanceData(labels=torch.tensor([0, 3]), masks=BitmapMasks(masks.numpy(), H, W),
                                          bboxes=torch.tensor([[0., H / 2, W / 2, H], [W / 2, H / 2, W, H]]))
            sem = torch.full((1, H, W), 255, dtype=torch.long)
            sem[:, :H // 2] = 5 + int(torch.randint(0, 4, (1, ), generator=g))  # one stuff class on top
            s.gt_sem_seg = PixelData(sem_seg=sem)
        else:
            from mmseg.structures import SegDataSample
            s = SegDataSample(metainfo=meta)
            s.gt_sem_seg = PixelData(data=torch.randint(0, 8, (1, H, W), generator=g))
        samples.append(s)
    return dict(inputs=imgs, data_samples=samples)
