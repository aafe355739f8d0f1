"""Inference helpers: the stock OpenMMLab inferencers, picked by a config's scope."""
from clusterseg.apis.inference import (draw_prediction, get_task, inference_model,
                                       init_inferencer, predict_and_draw)

__all__ = ['get_task', 'init_inferencer', 'inference_model', 'draw_prediction', 'predict_and_draw']
