"""Deployment helpers: ONNX export and its check (:mod:`.onnx`), bf16 drift (:mod:`.precision`).

The CLI is ``tools/deployment/pytorch2onnx.py``; docs/en/deployment.md says what exports per
model family.
"""
from clusterseg.deploy.onnx import (ExportError, build_model_for_export, export_onnx, export_wrapper,
                                    family_of, time_onnx_vs_eager, verify_onnx)
from clusterseg.deploy.precision import bf16_drift

__all__ = ['ExportError', 'build_model_for_export', 'export_wrapper', 'export_onnx', 'verify_onnx',
           'family_of', 'time_onnx_vs_eager', 'bf16_drift']
