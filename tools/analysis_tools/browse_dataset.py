"""Draw the ground truth of a config's dataset, as its pipeline delivers it, into PNG files.

OpenMMLab's browse_dataset for any clusterseg / mmseg / mmdet / mmpretrain config: the dataset of
``{phase}_dataloader`` is built with its pipeline (and clusterseg's input checks, so a corrupt
image or a label outside the classes stops with the file named), and each sample is drawn by the
visualizer of the config's ``default_scope``: semantic masks in the palette (mmseg), instance boxes
and masks (mmdet), panoptic segments (mmdet, COCO panoptic sets) or the class label (mmpretrain).
``--num`` samples spread evenly over the dataset are written to ``--output-dir``, each as
``{image name}.png`` (``{folder}_{image name}.png`` where two folders hold the same name).

Example:
    python tools/analysis_tools/browse_dataset.py configs/custom/pacahead_pacavit-tiny_1xb4-300it_custom-seg-128x128.py \\
        --output-dir work_dirs/browse/seg --not-show
    # the validation images, 4 of them, with another data root
    python tools/analysis_tools/browse_dataset.py configs/custom/mask-rcnn_pacavit-tiny_fpn_1xb4-12e_custom-coco-128x128.py \\
        --phase val --num 4 --not-show --cfg-options val_dataloader.dataset.data_root=data/my_coco/
"""
import argparse
import importlib
import os
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # from a checkout

import numpy as np  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

from clusterseg.engine import (EmptyDatasetError, add_input_checks, check_data_roots, install,  # noqa: E402
                               scope_of)
from clusterseg.utils.progress import add_progress_argument, echo, track  # noqa: E402

_CLS_MIN_SIDE = 224  # classification images are enlarged to this short side so the label is legible


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        epilog='Example:' + __doc__.split('Example:')[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file whose dataset is drawn')
    parser.add_argument('--output-dir', '-o',
                        help='where the PNGs go (default: work_dirs/browse_dataset/<config name>)')
    parser.add_argument('--num', '-n', type=int, default=10,
                        help='number of samples, spread evenly over the dataset (default 10; '
                             'all of them when the dataset is smaller)')
    parser.add_argument('--phase', '-p', choices=['train', 'val', 'test'], default='train',
                        help='which dataloader\'s dataset and pipeline (default train: with its '
                             'augmentations)')
    parser.add_argument('--not-show', action='store_true',
                        help='only write the files, open no window (no window is opened either '
                             'when there is no display)')
    parser.add_argument('--show-interval', type=float, default=2,
                        help='seconds each image is shown (default 2)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. train_dataloader.dataset.data_root=PATH')
    add_progress_argument(parser)
    args = parser.parse_args(argv)
    if args.num < 1:
        parser.error(f'--num must be at least 1, got {args.num}')
    return args


def _has_display():
    return sys.platform in ('win32', 'darwin') or bool(os.environ.get('DISPLAY')
                                                       or os.environ.get('WAYLAND_DISPLAY'))


def _describe(ds_cfg):
    """Where a dataset reads from, for error messages."""
    parts = [f'{k}={ds_cfg.get(k)!r}' for k in ('data_root', 'ann_file', 'data_prefix', 'split')
             if ds_cfg.get(k)]
    return f'{ds_cfg.get("type")} ({", ".join(parts)})'


def build_dataset(cfg, phase):
    """The dataset of ``{phase}_dataloader`` with its pipeline (and clusterseg's input checks)."""
    key = f'{phase}_dataloader'
    loader = cfg.get(key, None)
    if not isinstance(loader, dict) or not isinstance(loader.get('dataset'), dict):
        raise SystemExit(f'config {cfg.filename} has no {key}.dataset: choose another --phase')
    try:
        check_data_roots(cfg, (key, ))
    except FileNotFoundError as e:
        raise SystemExit(str(e)) from None
    add_input_checks(cfg)
    registry = importlib.import_module(f'{cfg.default_scope}.registry').DATASETS
    ds_cfg = cfg[key].dataset
    try:
        dataset = registry.build(ds_cfg)
    except FileNotFoundError as e:  # an ann_file or an image folder under the data root
        raise SystemExit(f'{key}.dataset {_describe(ds_cfg)}: {e}') from None
    except EmptyDatasetError as e:
        raise SystemExit(str(e)) from None
    if len(dataset) == 0:
        raise SystemExit(f'{key}.dataset {_describe(ds_cfg)} is empty: no image was found (check '
                         'data_prefix, the image and annotation suffixes, and for COCO files '
                         'that the json lists images with annotations of the configured classes)')
    return dataset


def build_visualizer(cfg, dataset):
    registry = importlib.import_module(f'{cfg.default_scope}.registry').VISUALIZERS
    vis_cfg = dict(cfg.visualizer)
    # a name of its own: a visualizer is a per-name singleton; files are written by out_file
    vis_cfg.update(name=f'browse_dataset_{time.time_ns()}', vis_backends=None, save_dir=None)
    visualizer = registry.build(vis_cfg)
    meta = dict(dataset.metainfo)
    if cfg.default_scope == 'mmseg':
        # mmseg fills in a palette for classes that have none
        visualizer.set_dataset_meta(meta.get('classes'), meta.get('palette'), meta.get('dataset_name'))
    else:
        visualizer.dataset_meta = meta
    return visualizer


def annotations_in_original_frame(pipeline_cfg):
    """True when the annotations are loaded after a transform that moves pixels (mmseg's and
    mmdet's test pipelines: ``LoadImageFromFile``, ``Resize``, ``LoadAnnotations``): they are in
    the original image's frame, so the image is drawn at its original size."""
    types = [str(t.get('type', '')).split('.')[-1] for t in pipeline_cfg or [] if isinstance(t, dict)]
    # LoadAnnotations, LoadPanopticAnnotations and clusterseg's checking versions of them
    loads = [i for i, t in enumerate(types) if t.startswith('Load') and t.endswith('Annotations')]
    image = [i for i, t in enumerate(types) if t == 'LoadImageFromFile']
    return bool(loads and image and loads[0] > image[0] + 1)


def _to_original(img, sample):
    import mmcv
    h, w = sample.ori_shape[:2]
    return img if img.shape[:2] == (h, w) else mmcv.imresize(img, (w, h))


def _panoptic_seg(sample, num_classes):
    """A gt_panoptic_seg (label + instance * INSTANCE_OFFSET, VOID = num_classes) from mmdet's
    panoptic targets: the semantic map of all segments and the masks of the thing instances."""
    from mmdet.evaluation import INSTANCE_OFFSET
    from mmengine.structures import PixelData
    sem = np.asarray(sample.gt_sem_seg.sem_seg)[0].astype(np.int64)  # (H, W)
    pan = np.where(sem == 255, num_classes, sem)
    inst = sample.gt_instances
    masks = inst.get('masks', None)
    if masks is not None and len(inst) > 0:
        labels = np.asarray(inst.labels)
        for k, mask in enumerate(np.asarray(masks).astype(bool)):
            if mask.shape == pan.shape:
                pan[mask] = labels[k] + (k + 1) * INSTANCE_OFFSET
    return PixelData(sem_seg=pan[None])


def _det_sample(sample, num_classes, panoptic):
    """mmdet's data sample made drawable: boxes as a tensor, masks as bool arrays; a panoptic
    sample (semantic map + thing masks) becomes one panoptic map."""
    from mmdet.models.utils import mask2ndarray
    from mmdet.structures.bbox import BaseBoxes
    inst = sample.get('gt_instances', None)
    if inst is not None:
        if isinstance(inst.get('bboxes', None), BaseBoxes):
            inst.bboxes = inst.bboxes.tensor
        if inst.get('masks', None) is not None:
            inst.masks = mask2ndarray(inst.masks).astype(bool)
    if panoptic and 'gt_sem_seg' in sample and inst is not None:
        sample.gt_panoptic_seg = _panoptic_seg(sample, num_classes)
        del sample.gt_sem_seg
        del sample.gt_instances  # each segment is drawn once, outlined, with its class name
    return sample


def draw(visualizer, scope, name, img, sample, out_file, show, wait_time, meta):
    if scope == 'mmpretrain':
        short = min(img.shape[:2])
        visualizer.visualize_cls(img, sample, draw_pred=False,
                                 resize=_CLS_MIN_SIDE if short < _CLS_MIN_SIDE else None,
                                 show=show, wait_time=wait_time, out_file=out_file, name=name)
    elif scope == 'mmseg':
        visualizer.add_datasample(name, img, sample, draw_gt=True, draw_pred=False, show=show,
                                  wait_time=wait_time, out_file=out_file)
    else:
        panoptic = 'thing_classes' in meta and 'stuff_classes' in meta  # CocoPanopticDataset
        sample = _det_sample(sample, len(meta.get('classes') or ()), panoptic)
        visualizer.add_datasample(name, img, sample, draw_gt=True,
                                  draw_pred=False, show=show, wait_time=wait_time, out_file=out_file)


def main(argv=None):
    args = parse_args(argv)
    install()  # clusterseg's runtime safety (the empty-dataset error names the data root)
    if not osp.isfile(args.config):
        raise SystemExit(f'config file {args.config} does not exist')
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    try:
        scope = scope_of(cfg)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    init_default_scope(scope)
    out_dir = args.output_dir or osp.join(
        'work_dirs', 'browse_dataset', osp.splitext(osp.basename(args.config))[0])

    dataset = build_dataset(cfg, args.phase)
    visualizer = build_visualizer(cfg, dataset)
    pipeline = cfg[f'{args.phase}_dataloader'].dataset.get('pipeline')
    original_frame = annotations_in_original_frame(pipeline)
    os.makedirs(out_dir, exist_ok=True)
    show = not args.not_show and _has_display()
    if not args.not_show and not show:
        echo('[browse_dataset] no display: writing the files only (--not-show silences this)')

    n = min(args.num, len(dataset))
    indices = sorted(set(np.linspace(0, len(dataset) - 1, n).round().astype(int).tolist()))
    written, used = [], set()
    for i in track(indices, desc=f'browse_dataset ({args.phase}, {len(indices)} of {len(dataset)})',
                   enabled=not args.no_progress):
        item = dataset[i]
        sample = item['data_samples']
        img = item['inputs'].permute(1, 2, 0).numpy()[..., ::-1].copy()  # (H, W, 3) BGR -> RGB
        if original_frame and scope != 'mmpretrain':
            img = _to_original(img, sample)
        sample = sample.numpy() if hasattr(sample, 'numpy') else sample
        img_path = sample.get('img_path', None) or f'{i}.png'
        name = osp.splitext(osp.basename(img_path))[0] + '.png'
        if name in used:  # the same file name in two folders (one folder per class)
            name = f'{osp.basename(osp.dirname(img_path))}_{name}'
        if name in used:
            name = f'{i:06d}_{name}'
        used.add(name)
        out_file = osp.join(out_dir, name)
        draw(visualizer, scope, name, img, sample, out_file, show, args.show_interval,
             dataset.metainfo)
        written.append(out_file)
    echo(f'[browse_dataset] {len(written)} images of {len(dataset)} ({args.phase}_dataloader.dataset, '
         f'{type(dataset).__name__}) drawn to {out_dir}')
    return written


if __name__ == '__main__':
    main()
