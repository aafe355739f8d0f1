"""The GPU path: AMP training steps of every family, SyncBN in a 1-process DDP, mmcv's CUDA ops,
and bf16 inference. Skipped where no CUDA GPU is visible; run on a GPU
machine by tools/misc/gpu_check.sh."""
import copy
import os
import socket

import pytest
import torch

from tests.test_deployment.families import FAMILIES, inputs, train_batch

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason='needs a CUDA GPU (torch.cuda.is_available() is False); tools/misc/gpu_check.sh runs '
           'these on a GPU machine')

DEVICE = 'cuda'


def _cuda_model(name, seed=0):
    """The family's tiny model on the GPU, SyncBN kept (get_model reverts it only on the CPU)."""
    from mmengine.config import Config

    from clusterseg.apis import get_model
    config, options, _, _ = FAMILIES[name]
    cfg = Config.fromfile(config)
    if options:
        cfg.merge_from_dict(copy.deepcopy(options))
    torch.manual_seed(seed)
    return get_model(cfg, device=DEVICE)


@pytest.mark.parametrize('dtype', ['float16', 'bfloat16'])
@pytest.mark.parametrize('name', list(FAMILIES))
def test_amp_train_step(name, dtype):
    """MMEngine's AmpOptimWrapper (autocast + loss scaling for fp16), one SGD step."""
    from mmengine.optim import AmpOptimWrapper
    if dtype == 'bfloat16' and not torch.cuda.is_bf16_supported():
        pytest.skip('this GPU has no bf16')
    model = _cuda_model(name)
    model.train()
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    wrapper = AmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.01), dtype=dtype)
    torch.manual_seed(0)
    losses = model.train_step(train_batch(name), wrapper)  # the preprocessor moves it to the GPU
    for k, v in losses.items():
        assert torch.isfinite(v).all(), (name, dtype, k, v)
    params = dict(model.named_parameters())
    changed = [k for k in before if not torch.equal(before[k], params[k].detach())]
    assert changed, f'{name} {dtype}: no parameter moved (a skipped step: inf/nan gradients?)'
    assert all(torch.isfinite(params[k]).all() for k in changed)


def test_bf16_inference_on_cuda():
    from clusterseg.deploy import bf16_drift
    if not torch.cuda.is_bf16_supported():
        pytest.skip('this GPU has no bf16')
    for name in ('pacahead-seg', 'kmax-seg'):
        res = bf16_drift(_cuda_model(name), inputs(name).to(DEVICE))
        assert res['finite'] == 1.0 and 0 < res['rel_l2'] < 0.05, (name, res)


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.parametrize('backend', ['nccl', 'gloo'])
def test_syncbn_in_one_process_ddp(backend):
    """World size 1: SyncBN's synchronised statistics are the batch's own, so the DDP model's
    outputs and gradients equal the same network's with plain BN."""
    import torch.distributed as dist
    from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm
    if backend == 'nccl' and not dist.is_nccl_available():
        pytest.skip('torch was built without NCCL')
    model = _cuda_model('pacahead-seg')
    syncbn = [m for m in model.modules() if isinstance(m, torch.nn.SyncBatchNorm)]
    assert syncbn, 'the PaCa head config uses SyncBN'
    reference = revert_sync_batchnorm(copy.deepcopy(model)).train()
    os.environ.setdefault('MASTER_ADDR', '127.0.0.1')
    os.environ['MASTER_PORT'] = str(_free_port())
    dist.init_process_group(backend, rank=0, world_size=1)
    try:
        ddp = MMDistributedDataParallel(model.train(), device_ids=[torch.cuda.current_device()])
        x = inputs('pacahead-seg', batch=2).to(DEVICE)
        out = ddp(x, mode='tensor')
        ref = reference(x, mode='tensor')
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
        out.square().mean().backward()
        ref.square().mean().backward()
        for (k, p), (_, q) in zip(model.named_parameters(), reference.named_parameters()):
            if p.grad is not None:
                torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-3, msg=k)
        assert all(m.running_mean.abs().sum() > 0 for m in syncbn)  # statistics were updated
    finally:
        dist.destroy_process_group()


def test_mmcv_cuda_ops():
    """RoIAlign, NMS and deformable conv on CUDA equal their CPU results (mmcv built with
    MMCV_WITH_OPS=1 FORCE_CUDA=1 by tools/install/build_mmcv.sh)."""
    from mmcv.ops import RoIAlign, nms
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 8, 32, 32, generator=g)
    rois = torch.tensor([[0, 1., 1., 20., 20.], [1, 4., 8., 30., 18.], [0, 0., 0., 31., 31.]])
    align = RoIAlign((7, 7), spatial_scale=1.0, sampling_ratio=2, aligned=True)
    try:
        got = align(feats.to(DEVICE), rois.to(DEVICE))
    except (RuntimeError, NotImplementedError) as e:
        raise AssertionError('mmcv has no CUDA ops: rebuild it on this machine with '
                             'CLUSTERSEG_MMCV_CUDA=1 bash tools/install/build_mmcv.sh .venv/bin/python '
                             f'({type(e).__name__}: {e})') from e
    torch.testing.assert_close(got.cpu(), align(feats, rois), atol=1e-5, rtol=1e-5)
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [20., 20., 30., 30.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    _, keep = nms(boxes.to(DEVICE), scores.to(DEVICE), 0.5)
    assert keep.cpu().tolist() == [0, 2]  # box 1 overlaps box 0 (IoU 0.68) and is dropped


def test_cpu_fast_paths_step_aside_on_cuda():
    """The CPU-only autograd Functions (the transitions' taps-as-one-GEMM conv, the 7x7
    depth-wise conv's backward) are not used on the GPU, where cuDNN's kernels run; the fp32
    training step there equals the CPU's (which uses them) to fp32 rounding."""
    from clusterseg.models.backbones import PaCaViT
    from clusterseg.models.layers import dwconv, embed
    arch = dict(embed_dims=[16, 32, 48, 64], depths=[1, 1, 1, 1], num_clusters=[5, 6, 7, 0],
                clustering='conv')
    torch.manual_seed(0)
    cpu = PaCaViT(arch, out_indices=(0, 1, 2, 3), drop_path_rate=0.).train()
    gpu = copy.deepcopy(cpu).to(DEVICE)
    x = torch.randn(2, 3, 64, 48)
    # a random projection of the outputs: their plain sum is nearly constant after the LayerNorms
    # (its gradients would be rounding noise on both devices)
    with torch.no_grad():
        proj = [torch.randn_like(o) for o in cpu(x)]

    def loss(outs):
        return sum((o * r.to(o.device)).sum() for o, r in zip(outs, proj))
    calls = []
    originals = (embed._Conv3x3S2NHWC.apply, dwconv._DepthwiseConv2dCPU.apply)

    def spy(fn):
        def wrapped(*args):
            calls.append(args[0].device.type)
            return fn(*args)
        return wrapped
    embed._Conv3x3S2NHWC.apply = spy(originals[0])
    dwconv._DepthwiseConv2dCPU.apply = spy(originals[1])
    try:
        with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=False,
                                        allow_tf32=False):  # fp32 convs, comparable to the CPU's
            loss(gpu(x.to(DEVICE))).backward()
        assert calls == []
        loss(cpu(x)).backward()
        assert calls and set(calls) == {'cpu'}
    finally:
        embed._Conv3x3S2NHWC.apply, dwconv._DepthwiseConv2dCPU.apply = originals
    for (name, p), q in zip(cpu.named_parameters(), gpu.parameters()):
        torch.testing.assert_close(q.grad.cpu(), p.grad, rtol=1e-3,
                                   atol=1e-3 * p.grad.abs().max().item(), msg=lambda m: f'{name}: {m}')
