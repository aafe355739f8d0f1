"""ONNX export of clusterseg models, checked with onnxruntime against PyTorch.

The model is built from a config and a checkpoint by :func:`clusterseg.apis.get_model` (strict
load: a checkpoint that does not fit is an error), wrapped in a small ``nn.Module`` that takes the
*preprocessed* image batch (B, 3, H, W) (normalised, padded: what the model's data preprocessor
hands the network) and returns plain tensors:

=============  ==================================================  ===========================
family         outputs                                             wrapper
=============  ==================================================  ===========================
cls            ``logits`` (B, num_classes)                         ``model(x, mode='tensor')``
seg            ``seg_logits`` (B, L, H, W) at the input size       ``model.encode_decode``
seg (kMaX)     ``seg_scores`` (B, L, H, W): class x mask probs     ``model.encode_decode``
panoptic       ``class_logits`` (B, K, C+1), ``mask_logits``       ``panoptic_head.predict``
               (B, K, H, W); mask fusion stays in Python
               (:func:`panoptic_postprocess`)
backbone       ``feat0`` ... one per ``out_indices``               ``model.backbone``
=============  ==================================================  ===========================

Exporter: ``torch.onnx.export(..., dynamo=False)``, the TorchScript-based tracer, opset 17. On
torch 2.14 it still exists (with a deprecation warning); the default ``dynamo=True`` exporter
needs the extra ``onnxscript`` package and ``torch.export``, which refuses the data-dependent
control flow of DPC-kNN. What exports per family, and with which dynamic shapes, is in
docs/en/deployment.md.
"""
import contextlib
import copy
import os
import os.path as osp
import tempfile
import warnings
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

OPSET = 17

Tensors = Union[torch.Tensor, Sequence[torch.Tensor]]


class ExportError(ValueError):
    """A model / shape / option combination that cannot be exported (the message says why)."""


# ----------------------------------------------------------------------------- model and family
def build_model_for_export(config, checkpoint: Optional[str] = None, cfg_options: Optional[dict] = None):
    """The model of ``config`` (path, Config or model name) with ``checkpoint`` loaded strictly,
    in eval mode on the CPU (SyncBN reverted to BN). ``checkpoint=None``: random weights.
    ``cfg_options``: ``--cfg-options`` style overrides of the whole config."""
    from mmengine.config import Config

    from clusterseg.apis import get_model
    if cfg_options:
        from clusterseg.apis.model_zoo import _load_config
        cfg = config if isinstance(config, Config) else _load_config(config)[0]
        cfg.merge_from_dict(copy.deepcopy(cfg_options))  # merging pops its _delete_ keys
        config = cfg
    return get_model(config, pretrained=checkpoint, device='cpu')


def _is_kmax_seg(model) -> bool:
    head = getattr(model, 'decode_head', None)
    return head is not None and type(head).__name__ == 'KMaXSegHead'


def family_of(model) -> str:
    """``'cls'``, ``'seg'``, ``'seg-kmax'``, ``'panoptic'`` (kMaX-DeepLab) or ``'det'``."""
    scope = type(model).__module__.split('.')[0]
    name = type(model).__name__
    if name == 'KMaXDeepLab':
        return 'panoptic'
    if hasattr(model, 'decode_head'):
        return 'seg-kmax' if _is_kmax_seg(model) else 'seg'
    if scope == 'mmpretrain' or name == 'ImageClassifier':
        return 'cls'
    return 'det'


def fixed_input_size(model) -> Optional[Tuple[int, int]]:
    """(H, W) a fixed-size model (kMaX) runs at, else None."""
    if getattr(model, 'input_size', None) is not None:  # KMaXDeepLab
        return tuple(model.input_size)
    head = getattr(model, 'decode_head', None)
    if _is_kmax_seg(model) and head.input_size is not None:
        return tuple(head.input_size)
    return None


def backbone_name(model) -> str:
    backbone = getattr(model, 'backbone', model)
    return type(backbone).__name__


# ------------------------------------------------------------------------------------ wrappers
class _ClassifierWrapper(nn.Module):
    output_names = ('logits', )

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model(x, mode='tensor')  # (B, num_classes)
        return out[-1] if isinstance(out, (tuple, list)) else out


class _SegWrapper(nn.Module):
    """mmseg's ``encode_decode``: decode head output resized to the (traced) input size."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.output_names = ('seg_scores', ) if _is_kmax_seg(model) else ('seg_logits', )

    def forward(self, x):
        size = x.shape[2:]
        # a torch.Size img_shape: BaseDecodeHead.predict_by_feat resizes to it (a traced size,
        # so a dynamic export resizes to whatever input it gets)
        metas = [dict(img_shape=size, pad_shape=size, ori_shape=size)] * x.shape[0]
        return self.model.encode_decode(x, metas)  # (B, L, H, W)


class _PanopticWrapper(nn.Module):
    output_names = ('class_logits', 'mask_logits')

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        from mmengine.structures import BaseDataElement
        size = tuple(int(s) for s in x.shape[2:])  # kMaX: one fixed size, a constant of the graph
        feats = self.model.extract_feat(x)
        sample = BaseDataElement(metainfo=dict(batch_input_shape=size, pad_shape=size, img_shape=size))
        # (B, K, C+1), (B, K, H, W) at the input size
        return self.model.panoptic_head.predict(feats, [sample])


class _BackboneWrapper(nn.Module):
    def __init__(self, model, num_outputs):
        super().__init__()
        self.backbone = model.backbone
        self.output_names = tuple(f'feat{i}' for i in range(num_outputs))

    def forward(self, x):
        return tuple(self.backbone(x))


def export_wrapper(model, backbone_only: bool = False, shape: Tuple[int, int] = (64, 64)) -> nn.Module:
    """A small eval-mode ``nn.Module`` around ``model`` taking (B, 3, H, W) and returning plain
    tensors (see the module docstring). ``shape``: only used to count the backbone's outputs."""
    model.eval()
    if backbone_only:
        if not hasattr(model, 'backbone'):
            raise ExportError(f'--backbone-only: {type(model).__name__} has no .backbone')
        with torch.no_grad():
            n = len(tuple(model.backbone(torch.zeros(1, 3, *shape))))
        return _BackboneWrapper(model, n).eval()
    family = family_of(model)
    if family == 'cls':
        return _ClassifierWrapper(model).eval()
    if family in ('seg', 'seg-kmax'):
        return _SegWrapper(model).eval()
    if family == 'panoptic':
        return _PanopticWrapper(model).eval()
    raise ExportError(
        f'{type(model).__name__} ({family}): only classifiers, mmseg segmentors, kMaX-DeepLab and '
        'bare backbones (--backbone-only) export. Mask R-CNN needs mmcv ops (RoIAlign, NMS) that '
        'have no ONNX path here: export its backbone with --backbone-only (docs/en/deployment.md)')


def panoptic_postprocess(model, class_logits, mask_logits, data_samples, rescale=True):
    """kMaX-DeepLab's mask fusion (Python) on the exported network's outputs: the same as the
    model's ``predict`` after its head; fills ``data_samples`` (``pred_panoptic_seg``, ...)."""
    results = model.panoptic_fusion_head.predict(
        torch.as_tensor(class_logits), torch.as_tensor(mask_logits), data_samples, rescale=rescale)
    return model.add_pred_to_datasample(data_samples, results)


# -------------------------------------------------------------------------------------- checks
def check_export_shape(model, shape, dynamic: bool = False, backbone_only: bool = False):
    """Raise :class:`ExportError` where ``shape`` / ``dynamic`` cannot work for ``model``."""
    if len(shape) != 2 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ExportError(f'--shape must be two positive ints H W, got {tuple(shape)}')
    name = backbone_name(model)
    fixed = fixed_input_size(model)
    if fixed is not None and not backbone_only:
        if dynamic:
            raise ExportError(
                f'{type(model).__name__} runs at the fixed input size {fixed[0]}x{fixed[1]} '
                '(axial attention and the position grids are built for it): --dynamic does not apply; '
                f'export with --shape {fixed[0]} {fixed[1]}')
        if tuple(shape) != fixed:
            raise ExportError(
                f'{type(model).__name__} runs at the fixed input size {fixed[0]}x{fixed[1]}, '
                f'not --shape {shape[0]} {shape[1]}: export with --shape {fixed[0]} {fixed[1]} '
                '(pad smaller images to it, as the model does)')
    if dynamic and name == 'ClusTR':
        raise ExportError(
            'ClusTR: --dynamic does not apply: the DPC-kNN cluster counts M = N // sr^2 are Python '
            'ints of the token count N, fixed when the graph is traced (and the kNN k = min(5, N)), '
            'so a graph traced at one size is wrong at another. Export one file per input size')


# -------------------------------------------------------------------------------------- export
def _mean_matrix(length, out_len, dtype, device):
    """(out_len, length) averaging matrix of ``adaptive_avg_pool``: row i averages the inputs
    ``floor(i L / out) .. ceil((i + 1) L / out) - 1`` (PyTorch's bins). Built from tensor ops on
    ``length``, so a traced graph follows the input size."""
    i = torch.arange(out_len, device=device)
    start = torch.div(i * length, out_len, rounding_mode='floor')  # (out,)
    end = torch.div((i + 1) * length + out_len - 1, out_len, rounding_mode='floor')  # (out,)
    j = torch.arange(length, device=device)
    inside = ((j[None] >= start[:, None]) & (j[None] < end[:, None])).to(dtype)  # (out, L)
    return inside / inside.sum(1, keepdim=True)


class _ExportableAdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d`` as two averaging matmuls. The TorchScript exporter turns the
    stock module into an AveragePool of fixed kernel, and refuses it where the output size does not
    divide the input size (UperNet's PPM scales 1, 2, 3, 6 on a 16 x 16 map at 512 px)."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        H, W = x.shape[-2:]
        out_h, out_w = self.output_size
        ph = _mean_matrix(H, out_h, x.dtype, x.device)  # (out_h, H)
        pw = _mean_matrix(W, out_w, x.dtype, x.device)  # (out_w, W)
        return torch.matmul(torch.matmul(ph, x), pw.t())  # (B, C, out_h, out_w)


@contextlib.contextmanager
def _exportable_adaptive_pools(module):
    """Swap every ``nn.AdaptiveAvgPool2d`` with an output size other than 1 x 1 for
    :class:`_ExportableAdaptiveAvgPool2d` while exporting; the originals are put back after."""
    swapped = []
    for parent in module.modules():
        for name, child in list(parent.named_children()):
            if type(child) is not nn.AdaptiveAvgPool2d:
                continue
            size = child.output_size
            size = (size, size) if isinstance(size, int) else tuple(size)
            if None in size or size == (1, 1):
                continue
            setattr(parent, name, _ExportableAdaptiveAvgPool2d(size))
            swapped.append((parent, name, child))
    try:
        yield
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)


def _sort_symbolic(g, self, *args):
    """``aten::sort`` and ``aten::sort.stable`` (self, stable, dim, descending) as ONNX TopK over
    the whole axis. The stock symbolic reads ``sort.stable``'s extra argument as ``out=`` and
    refuses it (DPC-kNN sorts with ``stable=True``). TopK is stable by its spec (equal values:
    the lower index first), so the stable sort is exact."""
    from torch.onnx._internal.torchscript_exporter import symbolic_helper
    dim, descending = args[-2:]
    dim = symbolic_helper._maybe_get_const(dim, 'i')
    descending = symbolic_helper._maybe_get_const(descending, 'b')
    return symbolic_helper._sort_helper(g, self, dim, descending=bool(descending))


def _index_add_symbolic(g, self, dim, index, source, alpha=None):
    """``aten::index_add`` as ONNX ScatterElements with ``reduction='add'`` (opset >= 16): exact
    with repeated indices (many tokens into one cluster, :func:`~clusterseg.models.layers.cluster.
    pool_clusters`), which the stock symbolic (a plain scatter) gets wrong or refuses."""
    from torch.onnx._internal.torchscript_exporter import symbolic_helper
    if alpha is not None and symbolic_helper._scalar(symbolic_helper._maybe_get_scalar(alpha)) != 1:
        return symbolic_helper._unimplemented('index_add', 'alpha != 1', self)
    dim = symbolic_helper._maybe_get_const(dim, 'i')
    rank = symbolic_helper._get_tensor_rank(source)
    if rank is None or not isinstance(dim, int):
        return symbolic_helper._unimplemented('index_add', 'unknown rank or dim', self)
    dim = dim % rank
    shape = [1] * rank
    shape[dim] = -1  # index (K,) -> K along dim, then broadcast to the source's shape
    idx = g.op('Reshape', index, g.op('Constant', value_t=torch.tensor(shape, dtype=torch.int64)))
    idx = g.op('Expand', idx, g.op('Shape', source))
    return g.op('ScatterElements', self, idx, source, axis_i=dim, reduction_s='add')


def _without_out(name, num_args, opset):
    """The stock symbolic of ``aten::{name}`` at ``opset``, also taking the ``.out`` overload (one
    more, last, argument: the buffer written into), whose buffer is dropped: the exporter's
    in-place pass already routes later uses of the buffer to the op's result. The cluster code
    writes distance blocks into a reused buffer (``torch.bmm(..., out=buf)``) to save memory."""
    from torch.onnx._internal.torchscript_exporter import registration
    stock = registration.registry.get_function_group(f'aten::{name}').get(opset)

    def symbolic(g, *args):
        return stock(g, *args[:num_args])
    symbolic.__name__ = f'{name}_without_out'
    return symbolic


def _symbolics(opset):
    out = {'aten::sort': _sort_symbolic, 'aten::index_add': _index_add_symbolic}
    for name, num_args in (('bmm', 2), ('matmul', 2), ('mul', 2), ('add', 3), ('sub', 3)):
        out[f'aten::{name}'] = _without_out(name, num_args, opset)
    return out


def dpc_knn_traceable(x, num_clusters, k=5, memory_efficient=None, max_block_elems=None):
    """DPC-kNN as one static graph: :func:`clusterseg.models.layers.dpc_cluster.dpc_knn`'s
    definition (the same formula, rounding order and tie rules) computed on the whole (B, N, N)
    distance matrix, with no Python control flow on values. The library's version walks blocks
    whose number and sizes follow the data (the density peaks), which a traced graph would freeze
    at the traced input; it is swapped for this one while exporting, and the export tests check
    the ONNX graph against the library's eager output. ``memory_efficient`` and
    ``max_block_elems`` are accepted and ignored (the graph holds the N x N matrix)."""
    single = isinstance(num_clusters, int)
    counts = [num_clusters] if single else [int(m) for m in num_clusters]
    B, N, C = x.shape
    x = x.detach().float()
    k = min(k, N)
    sq = x.pow(2).sum(-1)  # (B, N)
    # (|a|^2 + |b|^2) - 2 a.b, clamped at 0, / C: D^2 (B, N, N)
    d2 = ((sq[:, :, None] + sq[:, None, :]) - torch.bmm(x, x.transpose(1, 2)) * 2).clamp_min(0) / C
    rho = torch.exp(-d2.topk(k, dim=-1, largest=False).values.mean(-1))  # (B, N)
    d2_max = d2.flatten(1).amax(-1)  # (B, )
    by_rho = torch.sort(rho, dim=-1, descending=True, stable=True).indices  # (B, N)
    idx = torch.arange(N, device=x.device)[None].expand(B, N)
    rank = torch.zeros_like(by_rho).scatter(1, by_rho, idx)  # (B, N)
    not_denser = rank[:, None, :] >= rank[:, :, None]  # (B, N, N): j is not denser than i
    delta2 = d2.masked_fill(not_denser, float('inf')).amin(-1)  # (B, N)
    delta2 = torch.where(torch.isinf(delta2), d2_max[:, None], delta2)  # the densest token
    order = torch.sort(rho * delta2.sqrt(), dim=-1, descending=True, stable=True).indices  # (B, N)
    results = []
    for m in counts:
        centres = order[:, :m]  # (B, M)
        # nearest centre (argmin: the first, i.e. best-ranked, of equal distances)
        assign = d2.gather(2, centres[:, None, :].expand(B, N, m)).argmin(-1)  # (B, N)
        ranks = torch.arange(m, device=x.device)[None].expand(B, m)
        results.append(assign.scatter(1, centres, ranks))  # a centre joins its own cluster
    return results[0] if single else results


@contextlib.contextmanager
def _traceable_dpc_knn():
    from clusterseg.models.layers import dpc_cluster
    original = dpc_cluster.dpc_knn
    dpc_cluster.dpc_knn = dpc_knn_traceable
    try:
        yield
    finally:
        dpc_cluster.dpc_knn = original


@contextlib.contextmanager
def _export_patches(module, opset):
    from torch.onnx import register_custom_op_symbolic, unregister_custom_op_symbolic
    if opset < 16:
        raise ExportError(f'opset {opset}: clusterseg exports need opset >= 16 (ScatterElements with '
                          'reduction, for the cluster pooling)')
    symbolics = _symbolics(opset)
    for name, fn in symbolics.items():
        register_custom_op_symbolic(name, fn, opset)
    try:
        with _exportable_adaptive_pools(module), _traceable_dpc_knn(), warnings.catch_warnings():
            # the TorchScript exporter's deprecation notice and tracer warnings about Python values
            # (sizes, asserts); the dynamic-shape tests check the graphs at other sizes
            warnings.simplefilter('ignore')
            yield
    finally:
        for name in symbolics:
            unregister_custom_op_symbolic(name, opset)


def export_onnx(model, out_file: str, shape: Tuple[int, int] = (224, 224), batch_size: int = 1,
                dynamic: bool = False, backbone_only: bool = False, opset: int = OPSET) -> nn.Module:
    """Export ``model`` (an mm model built by :func:`build_model_for_export`) to ``out_file``.

    Args:
        shape: (H, W) of the traced input (the preprocessed, padded batch).
        dynamic: batch, height and width as dynamic axes (refused where the graph cannot follow;
            see :func:`check_export_shape`).
        backbone_only: export ``model.backbone`` alone (its feature maps).

    Returns:
        nn.Module: the wrapper that was exported (for :func:`verify_onnx`).

    Raises:
        ExportError: a shape / option the model does not take, or a model that does not run at
            ``shape`` (the message has the model's own error).
    """
    shape = tuple(shape)
    check_export_shape(model, shape, dynamic, backbone_only)
    wrapper = export_wrapper(model, backbone_only, shape)
    x = torch.randn(batch_size, 3, *shape)
    try:
        with torch.no_grad():
            outs = wrapper(x)
    except Exception as e:
        raise ExportError(f'{type(model).__name__} does not run at --shape {shape[0]} {shape[1]}: '
                          f'{type(e).__name__}: {e}') from e
    outs = outs if isinstance(outs, (tuple, list)) else (outs, )
    names = list(wrapper.output_names)[:len(outs)]
    dynamic_axes = None
    if dynamic:
        dynamic_axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
        for n, o in zip(names, outs):
            axes = {0: 'batch'}
            if o.dim() == 4:
                axes.update({2: f'{n}_height', 3: f'{n}_width'})
            elif o.dim() == 3 and backbone_only:  # token outputs (B, N, C)
                axes[1] = f'{n}_tokens'
            dynamic_axes[n] = axes
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    with torch.no_grad(), _export_patches(wrapper, opset):
        torch.onnx.export(wrapper, (x, ), out_file, dynamo=False, opset_version=opset,
                          input_names=['input'], output_names=names, dynamic_axes=dynamic_axes,
                          do_constant_folding=True)
    import onnx
    if 'input' not in [i.name for i in onnx.load(out_file, load_external_data=False).graph.input]:
        os.remove(out_file)
        raise ExportError(
            f'{type(model).__name__}: the traced graph does not depend on its input (folded to '
            'constants): some module computes its output on a path the tracer does not record '
            '(a custom autograd.Function, .item() / .tolist(), numpy); it must take its plain '
            'PyTorch path under torch.jit.is_tracing()')
    return wrapper


def _session(onnx_path, threads=None):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(onnx_path, opts, providers=['CPUExecutionProvider'])


def _as_tuple(inputs) -> tuple:
    return (inputs, ) if isinstance(inputs, torch.Tensor) else tuple(inputs)


def _flat(outs):
    if isinstance(outs, torch.Tensor):
        return [outs]
    return [t for o in outs for t in _flat(o)]


def run_onnx(onnx_path_or_session, inputs) -> list:
    """onnxruntime outputs (numpy arrays) of ``inputs`` (a tensor or a tuple of them)."""
    sess = (_session(onnx_path_or_session) if isinstance(onnx_path_or_session, (str, os.PathLike))
            else onnx_path_or_session)
    feeds = {i.name: t.detach().cpu().numpy() for i, t in zip(sess.get_inputs(), _as_tuple(inputs))}
    return sess.run(None, feeds)


def verify_onnx(model: nn.Module, onnx_path: str, inputs: Tensors) -> float:
    """max |PyTorch - onnxruntime| over all outputs of ``model`` (the exported wrapper) on
    ``inputs``. Raises :class:`ExportError` if the output count or a shape differs."""
    inputs = _as_tuple(inputs)
    with torch.no_grad():
        ref = _flat(model(*inputs))
    got = run_onnx(onnx_path, inputs)
    if len(got) != len(ref):
        raise ExportError(f'{onnx_path}: {len(got)} outputs, PyTorch gives {len(ref)}')
    diff = 0.
    for i, (r, g) in enumerate(zip(ref, got)):
        if tuple(r.shape) != tuple(g.shape):
            raise ExportError(f'{onnx_path}: output {i} has shape {tuple(g.shape)} in onnxruntime, '
                              f'{tuple(r.shape)} in PyTorch')
        diff = max(diff, float((r.float() - torch.from_numpy(g).float()).abs().max()) if r.numel() else 0.)
    return diff


def time_onnx_vs_eager(model: nn.Module, inputs: Tensors, repeat: int = 5, warmup: int = 1,
                       onnx_path: Optional[str] = None, backbone_only: bool = False) -> Dict[str, float]:
    """Best-of-``repeat`` time of eager PyTorch and onnxruntime in the same process and threads,
    interleaved call by call (:func:`clusterseg.utils.benchmark.best_of_interleaved`), so that
    load from other processes hits both alike.

    Args:
        model: an exported wrapper (then ``onnx_path`` is its file) or an mm model (exported to a
            temporary file at the shape of ``inputs``, static shapes).
        inputs: (B, 3, H, W) preprocessed batch (or a tuple of the wrapper's inputs).

    Returns:
        dict(eager_ms, onnx_ms, speedup (eager / onnx), max_abs_diff, threads).
    """
    inputs = _as_tuple(inputs)
    with tempfile.TemporaryDirectory() as tmp:
        if onnx_path is None:
            x = inputs[0]
            model = export_onnx(model, osp.join(tmp, 'model.onnx'), tuple(x.shape[2:]), x.shape[0],
                                backbone_only=backbone_only)
            onnx_path = osp.join(tmp, 'model.onnx')
        elif not isinstance(model, (_ClassifierWrapper, _SegWrapper, _PanopticWrapper, _BackboneWrapper)):
            model = export_wrapper(model, backbone_only, tuple(inputs[0].shape[2:]))
        from clusterseg.utils.benchmark import best_of_interleaved
        sess = _session(onnx_path)
        diff = verify_onnx(model, onnx_path, inputs)
        with torch.no_grad():
            best = best_of_interleaved({'eager': lambda: model(*inputs),
                                        'onnx': lambda: run_onnx(sess, inputs)}, repeat, warmup)
    eager_ms, onnx_ms = best['eager'] * 1000, best['onnx'] * 1000
    return dict(eager_ms=eager_ms, onnx_ms=onnx_ms, speedup=eager_ms / onnx_ms, max_abs_diff=diff,
                threads=torch.get_num_threads())
