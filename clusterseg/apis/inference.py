"""Inference through the OpenMMLab inferencers, for any clusterseg config.

clusterseg configs carry their downstream library as ``default_scope`` (``mmseg``, ``mmdet`` or
``mmpretrain``), so the stock inferencers of those libraries run them unchanged
(``MMSegInferencer``, ``DetInferencer``, ``ImageClassificationInferencer``). These helpers only
pick the right one from the config and give every task the same two calls: predict, and draw the
prediction.

Wherever a config is taken, a model name of ``model-index.yml`` works too
(:func:`clusterseg.apis.list_models`): it stands for its config, and its published weights are
the default checkpoint (official layouts converted on the fly, see
:mod:`clusterseg.apis.model_zoo`).

A checkpoint must fit the model: missing, unexpected or mis-shaped keys raise
:class:`clusterseg.utils.CheckpointMismatchError` (naming the file, the counts and the first keys
of each kind) instead of drawing with random weights. ``allow_partial_load=True`` (or
``CLUSTERSEG_ALLOW_PARTIAL_LOAD=1``) accepts a partial load on purpose.
"""
import copy
import tempfile
from typing import Optional, Tuple, Union

import mmcv
import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

ConfigType = Union[str, Config]
ImageType = Union[str, np.ndarray]

TASKS = ('seg', 'det', 'panoptic', 'cls')


def _as_config(config: ConfigType) -> Config:
    """A Config from a config path, a model name or a Config."""
    if isinstance(config, str):
        from clusterseg.apis.model_zoo import get_model_info, is_model_name
        return Config.fromfile(get_model_info(config).config if is_model_name(config) else config)
    return config


def get_task(config: ConfigType) -> str:
    """The task of a config (or model name): ``'seg'``, ``'det'``, ``'panoptic'`` or ``'cls'``.

    The scope names the library; an mmdet model whose head predicts panoptic maps (a
    ``panoptic_fusion_head``, or a ``*Panoptic*`` model type) is ``'panoptic'``.
    """
    cfg = _as_config(config)
    scope = cfg.get('default_scope', None)
    if scope == 'mmseg':
        return 'seg'
    if scope == 'mmpretrain':
        return 'cls'
    if scope == 'mmdet':
        model = cfg.model
        text = str(model.get('type', '')) + str(model.get('panoptic_head', {}).get('type', ''))
        if 'panoptic_fusion_head' in model or 'Panoptic' in text:
            return 'panoptic'
        return 'det'
    raise ValueError(f'cannot tell the task of a config with default_scope={scope!r}: '
                     'expected mmseg, mmdet or mmpretrain')


def init_inferencer(config: ConfigType, checkpoint: Union[None, bool, str] = None, device: str = 'cpu',
                     allow_partial_load: Optional[bool] = None):
    """The stock OpenMMLab inferencer for ``config`` (chosen by its scope), with ``checkpoint``.

    Args:
        config (str | Config): a config path, a Config, or a model name of ``model-index.yml``.
        checkpoint (None | bool | str): the weights. For a config: None, no weights. For a model
            name: None or True, its published weights (random, with a warning, where none were
            published; True and none published is an error); False, none.
        allow_partial_load (bool | None): accept a checkpoint that does not fit the model (what
            does not load keeps its random initial values); None: ``CLUSTERSEG_ALLOW_PARTIAL_LOAD=1``.
            Otherwise such a checkpoint raises :class:`clusterseg.utils.CheckpointMismatchError`.
    """
    from clusterseg.apis.model_zoo import get_model_info, is_model_name
    from clusterseg.engine.errors import strip_input_checks
    from clusterseg.engine.patches import install
    from clusterseg.utils.state_dict import load_policy
    install()  # safe checkpoint loading, strict loads, model names in the stock inferencers
    # without the tools' checking transforms (clusterseg.LoadImageFromFile, ...): the stock
    # inferencers find the test pipeline's image loader by its stock name
    cfg = strip_input_checks(copy.deepcopy(_as_config(config)))
    task = get_task(cfg)
    model = config if isinstance(config, str) and is_model_name(config) else cfg
    if model is not cfg:
        if checkpoint is True and not get_model_info(config).weights:
            raise ValueError(f'model {config} has no published weights (no Weights: in '
                             f'{get_model_info(config).metafile}); pass the checkpoint of a trained model')
    elif isinstance(checkpoint, bool):
        raise TypeError('checkpoint=True/False is for a model name; with a config pass a path or None')
    name = checkpoint if isinstance(checkpoint, str) else None
    # several libraries in one process: build under the config's own scope, whatever is current
    with DefaultScope.overwrite_default_scope(cfg.default_scope), \
            load_policy('eval', name=name, allow_partial=allow_partial_load):
        return _build_inferencer(task, model, checkpoint, device)


def _build_inferencer(task, model, checkpoint, device):
    """``model``: a Config, or a model name (the stock inferencers take those once
    :func:`clusterseg.engine.patches.install` ran, as :func:`init_inferencer` does)."""
    if task == 'seg':
        from mmseg.apis import MMSegInferencer
        return MMSegInferencer(model, checkpoint, device=device)
    if task in ('det', 'panoptic'):
        from mmdet.apis import DetInferencer
        return DetInferencer(model, checkpoint, device=device, show_progress=False)
    from mmpretrain.apis import ImageClassificationInferencer
    pretrained = (True if checkpoint is None else checkpoint) if isinstance(model, str) else (checkpoint or False)
    return ImageClassificationInferencer(model, pretrained=pretrained, device=device)


def _scope(inferencer) -> str:
    return type(inferencer).__module__.split('.')[0]


def inference_model(inferencer, img: ImageType, device: str = 'cpu'):
    """Predict one image (a path, or a BGR array); returns the library's data sample.

    ``inferencer``: one of :func:`init_inferencer`; a model name / config path / Config (an
    inferencer is built for it, with a name's published weights; see :func:`init_inferencer`); or
    a model of :func:`clusterseg.apis.get_model` (anything with ``model.cfg``), run by its
    library's own API.
    """
    if isinstance(inferencer, (str, Config)):
        inferencer = init_inferencer(inferencer, device=device)
    if isinstance(inferencer, torch.nn.Module):
        return _inference_with_model(inferencer, img)
    scope = _scope(inferencer)
    with DefaultScope.overwrite_default_scope(scope):
        return _inference(inferencer, img, scope)


def _inference_with_model(model, img):
    cfg = getattr(model, 'cfg', None)
    if cfg is None:
        raise TypeError(f'{type(model).__name__} has no .cfg: pass a model of clusterseg.apis.get_model')
    task = get_task(cfg)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        if task == 'seg':
            from mmseg.apis import inference_model as seg_inference
            return seg_inference(model, img)
        if task in ('det', 'panoptic'):
            from mmdet.apis import inference_detector
            return inference_detector(model, img)
        from mmpretrain.apis import ImageClassificationInferencer
        model._config = getattr(model, '_config', cfg)
        return ImageClassificationInferencer(model)(img, return_datasamples=True)[0]


def _inference(inferencer, img, scope):
    if scope == 'mmdet':
        out = inferencer(img, return_datasamples=True, no_save_pred=True, no_save_vis=True)
    else:
        out = inferencer(img, return_datasamples=True)
    preds = out['predictions'] if isinstance(out, dict) else out
    return preds[0] if isinstance(preds, (list, tuple)) else preds


def draw_prediction(inferencer, img: ImageType, data_sample, score_thr: float = 0.3) -> np.ndarray:
    """The library's own drawing of ``data_sample`` over ``img``, as an RGB array."""
    scope = _scope(inferencer)
    if scope == 'mmseg':
        vis = inferencer.visualize([img], [data_sample], return_vis=True)
    elif scope == 'mmdet':
        vis = inferencer.visualize([img], [data_sample], return_vis=True, no_save_vis=True,
                                   pred_score_thr=score_thr)
    else:  # mmpretrain draws only into show_dir
        with tempfile.TemporaryDirectory() as tmp:
            vis = inferencer.visualize([img], [data_sample], show_dir=tmp)
    return np.ascontiguousarray(vis[0])


def predict_and_draw(config: ConfigType, checkpoint: Union[None, bool, str], img: ImageType,
                     device: str = 'cpu', out_file: Optional[str] = None,
                     score_thr: float = 0.3,
                     allow_partial_load: Optional[bool] = None) -> Tuple[object, np.ndarray]:
    """Predict ``img`` with a config (or model name) + checkpoint and draw it; optionally write
    ``out_file``. ``checkpoint`` and ``allow_partial_load``: as in :func:`init_inferencer`."""
    inferencer = init_inferencer(config, checkpoint, device, allow_partial_load)
    sample = inference_model(inferencer, img)
    vis = draw_prediction(inferencer, img, sample, score_thr)
    if out_file:
        mmcv.imwrite(mmcv.rgb2bgr(vis), out_file)
    return sample, vis

