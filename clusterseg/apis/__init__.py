"""Inference helpers: the stock OpenMMLab inferencers, picked by a config's scope; models by name."""
from clusterseg.apis.inference import (draw_prediction, get_task, inference_model,
                                       init_inferencer, predict_and_draw)
from clusterseg.apis.model_zoo import (UnknownModelError, WeightsDownloadError, get_model,
                                       get_model_info, list_models)

__all__ = ['get_task', 'init_inferencer', 'inference_model', 'draw_prediction', 'predict_and_draw',
           'list_models', 'get_model', 'get_model_info', 'UnknownModelError', 'WeightsDownloadError']
