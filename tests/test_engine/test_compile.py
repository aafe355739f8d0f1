"""torch.compile of every model family equals eager; graph breaks counted; --compile -> config.

The backend here is ``aot_eager`` (Dynamo's graph capture + AOT autograd, no code generation):
inductor on this 2-core CPU needs ~4 minutes of C++ compilation for the smallest model, so its
test runs only with CLUSTERSEG_TEST_INDUCTOR=1 (docs/en/deployment.md has the measured figures).
"""
import copy
import logging
import os

import pytest
import torch
from mmengine.config import Config

from clusterseg.deploy.onnx import build_model_for_export, export_wrapper
from clusterseg.engine import compile as C
from tests.test_deployment.families import FAMILIES, build, inputs, train_batch

ATOL = 1e-4
# ClusTR: one clustered block (stage 1) and the plain-attention stage 4, at 32 px: every graph
# break of DPC-kNN appears once, in a compile of ~30 s instead of ~100 s for all three stages
CLUSTR_SMALL = copy.deepcopy(FAMILIES['clustr-cls'][1])
CLUSTR_SMALL['model']['backbone']['arch']['depths'] = [1, 0, 0, 1]


def _flat(out):
    return [out] if isinstance(out, torch.Tensor) else [t for o in out for t in _flat(o)]


def _compiled(module, backend='aot_eager'):
    """(compiled module, list that collects the FX graphs Dynamo hands the backend)."""
    from torch._dynamo.backends.registry import lookup_backend
    graphs = []

    def counting(gm, example_inputs):
        graphs.append(gm)
        return lookup_backend(backend)(gm, example_inputs)
    return torch.compile(module, backend=counting), graphs


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    torch._logging.set_logs(dynamo=logging.ERROR)  # the graph-break warnings are counted here
    yield
    torch._dynamo.reset()


def _model_and_input(name):
    if name == 'clustr-cls':
        torch.manual_seed(0)
        model = build_model_for_export(FAMILIES[name][0], cfg_options=CLUSTR_SMALL)
        return model, inputs(name, shape=(32, 32)), inputs(name, seed=5, shape=(32, 32))
    return build(name), inputs(name), inputs(name, seed=5)


@pytest.mark.parametrize('name', list(FAMILIES))
def test_compiled_forward_equals_eager(name):
    model, x, x2 = _model_and_input(name)
    wrapper = export_wrapper(model)
    compiled, graphs = _compiled(wrapper)
    with torch.no_grad():
        for inp in (x, x2):  # the second input: no recompile needed, same result
            for a, b in zip(_flat(compiled(inp)), _flat(wrapper(inp))):
                torch.testing.assert_close(a, b, atol=ATOL, rtol=1e-5)
    if name == 'clustr-cls':
        # DPC-kNN sizes its distance blocks from the data (the number of density peaks, the
        # columns each block needs: int() / tolist() of tensors): Dynamo breaks the graph there
        assert len(graphs) > 2
    else:
        assert len(graphs) == 1, f'{name}: {len(graphs) - 1} graph breaks (expected none)'


def test_clustr_breaks_are_all_dpc_knn(monkeypatch):
    """With DPC-kNN as one static graph (the ONNX export's), ClusTR compiles without a break."""
    from clusterseg.deploy.onnx import dpc_knn_traceable
    from clusterseg.models.layers import dpc_cluster
    monkeypatch.setattr(dpc_cluster, 'dpc_knn', dpc_knn_traceable)
    model, x, _ = _model_and_input('clustr-cls')
    compiled, graphs = _compiled(export_wrapper(model))
    with torch.no_grad():
        compiled(x)
    assert len(graphs) == 1


def test_compiled_train_step_equals_eager():
    """MMEngine's ``cfg.compile`` path: ``torch.compile(model.train_step)``, one SGD step."""
    from mmengine.optim import OptimWrapper

    def step(compile_it):
        model = build('psvit-cls')  # the family that compiles fastest (~10 s forward)
        model.train()
        wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
        train_step = torch.compile(model.train_step, backend='aot_eager') if compile_it else model.train_step
        torch.manual_seed(3)  # the same Mixup / CutMix draws
        losses = train_step(train_batch('psvit-cls'), wrapper)
        return losses, dict(model.named_parameters())

    eager_losses, eager_params = step(False)
    losses, params = step(True)
    assert set(losses) == set(eager_losses) and 'loss' in ''.join(losses)
    for k in losses:
        torch.testing.assert_close(losses[k], eager_losses[k], atol=ATOL, rtol=1e-5)
    for k in params:  # the update went through the compiled backward
        torch.testing.assert_close(params[k], eager_params[k], atol=ATOL, rtol=1e-4, msg=k)


def test_compiled_paca_head_backward_equals_eager():
    """The PaCa head's token BatchNorm1d runs on contiguous (B, C, L) tokens: AOT autograd's
    backward of BatchNorm1d on a transposed view fails under aot_eager (torch 2.14)."""
    head = build('pacahead-seg').decode_head.train()
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(2, c, 64 // s, 64 // s, generator=g) for c, s in zip([16, 32, 48, 64], [4, 8, 16, 32])]

    def grads(fn):
        head.zero_grad()
        torch.manual_seed(0)  # dropout
        fn(feats).square().mean().backward()
        return {k: p.grad.clone() for k, p in head.named_parameters() if p.grad is not None}

    eager = grads(head)
    compiled = grads(torch.compile(head, backend='aot_eager'))
    assert set(compiled) == set(eager) and any('k.2' in k for k in eager)  # the token norm learns
    for k in eager:
        torch.testing.assert_close(compiled[k], eager[k], atol=ATOL, rtol=1e-4, msg=k)


@pytest.mark.skipif(not os.environ.get('CLUSTERSEG_TEST_INDUCTOR'),
                    reason='inductor compiles C++ kernels for minutes on a 2-core CPU; '
                           'set CLUSTERSEG_TEST_INDUCTOR=1 to run')
@pytest.mark.parametrize('name', ['pacavit-cls', 'pacahead-seg'])
def test_inductor_forward_equals_eager(name):
    model, x, _ = _model_and_input(name)
    wrapper = export_wrapper(model)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(wrapper, backend='inductor')(x), wrapper(x),
                                   atol=ATOL, rtol=1e-5)


# ------------------------------------------------------------------------------- --compile -> cfg
def test_apply_compile_sets_mmengine_compile_and_the_hook():
    cfg = Config(dict(custom_hooks=[dict(type='SomeHook')]))
    C.apply_compile(cfg, 'aot_eager', 'train')
    assert cfg.compile == dict(backend='aot_eager')
    assert cfg.custom_hooks == [dict(type='SomeHook'),
                                dict(type='clusterseg.CompileHook', compile_cfg=dict(backend='aot_eager'))]
    C.apply_compile(cfg, dict(backend='eager', dynamic=False), 'test')  # replaces, no second hook
    assert cfg.compile == dict(backend='eager', dynamic=False)
    assert [h['type'] for h in cfg.custom_hooks] == ['SomeHook', 'clusterseg.CompileHook']
    assert C.apply_compile(Config(dict(a=1)), True).compile == dict(backend='inductor')


def test_apply_compile_off_leaves_the_config():
    for arg in (None, False):
        cfg = Config(dict(a=1))
        C.apply_compile(cfg, arg, 'test')
        assert 'compile' not in cfg and 'custom_hooks' not in cfg


def test_bad_compile_arguments():
    with pytest.raises(C.CompileUnavailableError, match='no_such_backend: unknown .*aot_eager'):
        C.apply_compile(Config(), 'no_such_backend')
    with pytest.raises(ValueError, match="mode must be 'train', 'val' or 'test'"):
        C.apply_compile(Config(), 'eager', 'predict')
    with pytest.raises(TypeError, match='got int'):
        C.compile_options(3)


def test_inductor_without_a_cxx_compiler(monkeypatch):
    monkeypatch.setattr(C.shutil, 'which', lambda name: None)
    with pytest.raises(C.CompileUnavailableError, match='needs a C.. compiler.*--compile aot_eager'):
        C.apply_compile(Config(), 'inductor')
    C.apply_compile(Config(), 'aot_eager')  # no compiler needed


def test_compile_hook_compiles_val_and_test_step_once():
    from mmengine.registry import HOOKS

    class Runner:
        class logger:
            messages = []
            info = messages.append

        class model:
            @staticmethod
            def val_step(batch):
                return [batch * 2]

            @staticmethod
            def test_step(batch):
                return [batch + 1]

    hook = HOOKS.build(dict(type='clusterseg.CompileHook', compile_cfg=dict(backend='eager')))
    plain = Runner.model.val_step
    hook.before_val(Runner)
    compiled = Runner.model.val_step
    assert compiled is not plain
    hook.before_val(Runner)  # validation every N iterations: compiled once
    assert Runner.model.val_step is compiled
    hook.before_test(Runner)
    assert Runner.model.test_step(torch.ones(2))[0].tolist() == [2., 2.]
    assert Runner.model.val_step(torch.ones(2))[0].tolist() == [2., 2.]
    assert len(Runner.logger.messages) == 2


@pytest.mark.parametrize('tool, mode', [('train', 'train'), ('test', 'test')])
def test_tools_compile_flag_reaches_the_config(tool, mode, tmp_path):
    """tools/train.py / test.py --compile [BACKEND] -> prepare_config -> cfg.compile + CompileHook;
    without the flag the config has neither."""
    import importlib.util
    from clusterseg.engine import prepare_config
    from tests.conftest import REPO
    spec = importlib.util.spec_from_file_location(f'tool_{tool}', f'{REPO}/tools/{tool}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = f'{REPO}/configs/pacavit/pacavit-tiny_1xb32-10e_synthetic-imagenet-64px.py'
    ckpt = tmp_path / 'w.pth'
    ckpt.write_bytes(b'')
    root = tmp_path / 'imagenet'
    from clusterseg.datasets import synthetic
    synthetic.make_cls(str(root), num_train=2, num_val=1, size=32, seed=0, progress=False)
    opts = [f'{k}_dataloader.dataset.data_root={root}' for k in ('train', 'val', 'test')]
    pos = [config] + ([str(ckpt)] if tool == 'test' else [])
    rest = ['--work-dir', str(tmp_path / 'w'), '--cfg-options'] + opts
    for extra, backend in ([], None), (['--compile'], 'inductor'), (['--compile', 'aot_eager'], 'aot_eager'):
        cfg = prepare_config(module.parse_args(pos + extra + rest), mode)
        hooks = [h for h in cfg.get('custom_hooks', []) if h['type'] == 'clusterseg.CompileHook']
        if backend is None:
            assert 'compile' not in cfg and not hooks
        else:
            assert cfg.compile['backend'] == backend and hooks[0]['compile_cfg']['backend'] == backend
