"""bf16 autocast on the CPU: inference drift against fp32 and a mixed-precision training step,
for every model family.

MMEngine's ``AmpOptimWrapper`` refuses to run without an accelerator (it asserts CUDA / NPU /
MLU / MUSA), so the CPU training step is ``torch.autocast('cpu', torch.bfloat16)`` around the
forward and loss, as AmpOptimWrapper's ``optim_context`` does on a GPU (bf16 needs no loss
scaling); tests/test_gpu/ runs AmpOptimWrapper itself.

Bounds (measured on the tiny models, random weights, batch 1): relative L2 drift of the outputs
0.2-1.4 %, ClusTR 3.5 % (its clusters can change) (bound 5 %); relative change of the training loss 0.02-0.24 % (bound 2 %).
"""
import pytest
import torch
import torch.nn as nn

from clusterseg.deploy import bf16_drift
from tests.test_deployment.families import FAMILIES, build, inputs, train_batch

REL_L2 = 0.05
LOSS_REL = 0.02

def test_bf16_drift_by_hand():
    """An identity Linear under autocast returns x rounded to bf16: the drift is that rounding."""
    lin = nn.Linear(4, 4, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(4))
    x = torch.tensor([[1.0, 1.0 + 2**-10, 3.0, -7.003]])
    rounded = x.bfloat16().float()
    res = bf16_drift(lin, x)
    assert res['max_abs_diff'] == pytest.approx(float((rounded - x).abs().max()))
    assert res['rel_l2'] == pytest.approx(float((rounded - x).norm() / x.norm()))
    assert res['finite'] == 1.0 and res['max_abs_ref'] == pytest.approx(7.003)
    assert res['fp32_ms'] > 0 and res['bf16_ms'] > 0


@pytest.mark.parametrize('name', list(FAMILIES))
def test_bf16_inference_drift(name):
    res = bf16_drift(build(name), inputs(name))
    assert res['finite'] == 1.0
    assert 0 < res['rel_l2'] < REL_L2, res  # > 0: autocast did run in bf16


@pytest.mark.parametrize('name', list(FAMILIES))
def test_bf16_autocast_train_step(name):
    model = build(name)
    model.train()
    losses = {}
    for amp in (False, True):
        torch.manual_seed(0)  # the same batch augmentations (Mixup / CutMix) in both runs
        data = model.data_preprocessor(train_batch(name), True)
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=amp):
            loss, _ = model.parse_losses(model(**data, mode='loss'))
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(bool(torch.isfinite(g).all()) for g in grads), name
        assert all(g.dtype == torch.float32 for g in grads)  # fp32 master weights and gradients
        losses[amp] = loss.item()
        model.zero_grad()
    assert torch.isfinite(torch.tensor(losses[True]))
    assert losses[True] != losses[False]  # the step did run in bf16
    assert abs(losses[True] - losses[False]) <= LOSS_REL * abs(losses[False]), losses
