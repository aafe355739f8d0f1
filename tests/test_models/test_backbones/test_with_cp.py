"""``with_cp=True`` (gradient checkpointing): the same outputs and gradients, blocks recomputed."""
import pytest
import torch

from clusterseg.models.backbones import ClusTR, PaCaViT, PSViT

CASES = {
    'pacavit': lambda cp: PaCaViT('tiny', out_indices=(0, 1, 2, 3), drop_path_rate=0.2, with_cp=cp),
    'pacavit-teacher': lambda cp: PaCaViT('tiny-teacher', out_indices=(0, 1, 2, 3), drop_path_rate=0.2,
                                          with_cp=cp),
    'clustr': lambda cp: ClusTR('tiny', out_indices=(0, 1, 2, 3), drop_path_rate=0.2, with_cp=cp),
    'psvit': lambda cp: PSViT('tiny', img_size=32, out_type='featmap', out_indices=(0, 1, 2, 3),
                              drop_path_rate=0.2, with_cp=cp),
}


def _blocks(model):
    if isinstance(model, PSViT):
        return list(model.layers)
    prefix = 'stage' if isinstance(model, PaCaViT) else 'block'
    return [b for i in range(4) for b in getattr(model, f'{prefix}{i + 1}')]


def _run(name, with_cp, x):
    torch.manual_seed(0)
    model = CASES[name](with_cp)
    model.init_weights()
    model.train()
    calls = [0]
    for blk in _blocks(model):
        blk.register_forward_pre_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
    torch.manual_seed(1)  # the same drop-path draws in both runs
    outs = model(x)
    sum((o.float() ** 2).mean() for o in outs).backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    return outs, grads, calls[0], len(_blocks(model))


@pytest.mark.parametrize('name', list(CASES))
def test_with_cp_gives_the_same_outputs_and_gradients(name):
    x = torch.randn(2, 3, 32, 32)
    outs, grads, calls, n_blocks = _run(name, False, x)
    outs_cp, grads_cp, calls_cp, _ = _run(name, True, x)
    for a, b in zip(outs, outs_cp):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert set(grads) == set(grads_cp) and grads
    for k in grads:
        torch.testing.assert_close(grads[k], grads_cp[k], rtol=1e-4, atol=1e-6, msg=k)
    assert calls == n_blocks
    assert calls_cp == 2 * n_blocks  # every block ran again in the backward pass


def test_with_cp_is_off_without_gradients():
    model = PaCaViT('tiny', with_cp=True).eval()
    calls = [0]
    for blk in _blocks(model):
        blk.register_forward_pre_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    assert calls[0] == len(_blocks(model))
