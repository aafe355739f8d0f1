"""Parameter and MAC counting (what the papers' tables call "FLOPs").

Counted: convolutions, linear layers and every matrix product, including the attention products
inside ``F.scaled_dot_product_attention`` (q k^T and attn v), which mmengine's counter does not
see. Not counted: normalisation, activations, softmax, pooling and resizing, so the numbers are
multiply-accumulates of the heavy ops, the rule the PaCa-ViT tables use.
"""
import torch
from mmengine.analysis import FlopAnalyzer
from mmengine.analysis.jit_handles import bmm_flop_jit, get_shape

_IGNORED = ('aten::batch_norm', 'aten::group_norm', 'aten::layer_norm', 'aten::instance_norm',
            'aten::upsample_nearest2d', 'aten::upsample_bilinear2d', 'aten::adaptive_avg_pool2d',
            'aten::grid_sampler')


def sdpa_macs(inputs, outputs):
    """MACs of ``scaled_dot_product_attention``: q k^T plus attn v.

    q: (..., N, d), k: (..., M, d), v: (..., M, d_v).
    """
    q, k, v = (get_shape(t) for t in inputs[:3])
    batch = 1
    for s in q[:-2]:
        batch *= s
    n, d = q[-2], q[-1]
    m, dv = k[-2], v[-1]
    return batch * n * m * (d + dv)


def baddbmm_macs(inputs, outputs):
    """MACs of ``baddbmm(input, a, b)``: those of ``bmm(a, b)`` (ClusTR's distance blocks; the
    added input is element-wise, not counted)."""
    return bmm_flop_jit(inputs[1:3], outputs)


def count_complexity(model, inputs):
    """Count the MACs of ``model(*inputs)`` and the parameters of ``model``.

    Args:
        model (nn.Module): the model (traced with torch.jit in eval mode).
        inputs (tuple): positional inputs.

    Returns:
        dict: ``macs`` (int), ``params`` (int), ``by_module`` (dict name -> MACs).
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            analyzer = FlopAnalyzer(model, inputs)
            analyzer.set_op_handle(**{name: None for name in _IGNORED})
            analyzer.set_op_handle(**{'aten::scaled_dot_product_attention': sdpa_macs,
                                      'aten::baddbmm': baddbmm_macs})
            analyzer.unsupported_ops_warnings(False)
            analyzer.uncalled_modules_warnings(False)
            analyzer.tracer_warnings('none')
            total = analyzer.total()
            by_module = dict(analyzer.by_module())
    finally:
        model.train(was_training)
    return dict(macs=int(total), params=sum(p.numel() for p in model.parameters()),
                by_module=by_module)
