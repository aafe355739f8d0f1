"""bf16 autocast inference: speed and the drift of the outputs against fp32."""
import contextlib
from typing import Dict, Sequence, Union

import torch
import torch.nn as nn

Tensors = Union[torch.Tensor, Sequence[torch.Tensor]]


def _flat(outs):
    if isinstance(outs, torch.Tensor):
        return [outs]
    if isinstance(outs, dict):
        return [t for v in outs.values() for t in _flat(v)]
    if isinstance(outs, (tuple, list)):
        return [t for o in outs for t in _flat(o)]
    return []


def _plain(model):
    """An mm model (anything with a data preprocessor) -> its export wrapper (plain tensors)."""
    if hasattr(model, 'data_preprocessor') and hasattr(model, 'extract_feat'):
        from clusterseg.deploy.onnx import export_wrapper
        return export_wrapper(model)
    return model


def bf16_drift(model: nn.Module, inputs: Tensors, repeat: int = 1, warmup: int = 0,
               device_type: str = None) -> Dict[str, float]:
    """Run ``model`` in fp32 and under ``torch.autocast(device_type, torch.bfloat16)``.

    Args:
        model: a module taking ``inputs`` (an mm model is wrapped as for ONNX export: its
            logits / feature maps).
        inputs: a tensor or a tuple of tensors (fp32).
        repeat, warmup: timed / untimed calls of each precision (best-of, interleaved).
        device_type: autocast device; default: that of the first input.

    Returns:
        dict(max_abs_diff, rel_l2 (||bf16 - fp32|| / ||fp32|| over all outputs), max_abs_ref,
        finite (1.0 if every bf16 output is finite), fp32_ms, bf16_ms, speedup (fp32 / bf16)).
    """
    model = _plain(model).eval()
    inputs = (inputs, ) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    device_type = device_type or inputs[0].device.type
    from clusterseg.utils.benchmark import best_of_interleaved

    def bf16():
        with torch.autocast(device_type, dtype=torch.bfloat16):
            return model(*inputs)

    with torch.no_grad():
        ref, low = model(*inputs), bf16()
        best = best_of_interleaved({'fp32': lambda: model(*inputs), 'bf16': bf16}, repeat, warmup,
                                   device=str(inputs[0].device))
    fp32_ms, bf16_ms = best['fp32'] * 1000, best['bf16'] * 1000
    ref = [t.float() for t in _flat(ref)]
    low = [t.float() for t in _flat(low)]
    if len(ref) != len(low) or not ref:
        raise ValueError(f'bf16_drift: {len(low)} outputs under autocast, {len(ref)} in fp32')
    diff = max(float((a - b).abs().max()) for a, b in zip(ref, low))
    num = sum(float(((a - b) ** 2).sum()) for a, b in zip(ref, low))
    den = sum(float((a ** 2).sum()) for a in ref)
    return dict(max_abs_diff=diff, rel_l2=(num / den) ** 0.5 if den > 0 else float(num > 0),
                max_abs_ref=max(float(a.abs().max()) for a in ref),
                finite=float(all(bool(torch.isfinite(b).all()) for b in low)),
                fp32_ms=fp32_ms, bf16_ms=bf16_ms, speedup=fp32_ms / bf16_ms)


@contextlib.contextmanager
def bf16_autocast(device_type='cpu'):
    """``torch.autocast(device_type, torch.bfloat16)``, the inference setting measured here."""
    with torch.autocast(device_type, dtype=torch.bfloat16):
        yield
