"""PSViT search: the compact set against brute force, supernet weight inheritance, and the tool
end to end (supernet training, search under a FLOPs budget, a config that builds and fits)."""
import itertools
import json
import random

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from clusterseg.models.backbones.psvit import PSViT, _stage_of_layers
from clusterseg.search import PSViTSearchSpace, PSViTSupernet
from tests.conftest import run_tool

TOOL = 'tools/search/psvit_search.py'


def _brute_force(depth, num_stages, max_chain):
    """Every (pool_after, share) by enumeration of all bit masks, filtered by the rules."""
    out = set()
    for pool_after in itertools.combinations(range(depth - 1), num_stages - 1):
        stage = _stage_of_layers(depth, pool_after)
        for bits in itertools.product([False, True], repeat=depth):
            ok, run = True, 0
            for l, b in enumerate(bits):
                if b and (l == 0 or stage[l] != stage[l - 1] or run >= max_chain):
                    ok = False
                run = run + 1 if b else 0
            if ok:
                out.add((pool_after, bits))
    return out


@pytest.mark.parametrize('depth,stages,chain', [(6, 3, 1), (7, 3, 2), (5, 2, 0)])
def test_compact_set_matches_brute_force(depth, stages, chain):
    space = PSViTSearchSpace(depth, stages, max_share_chain=chain)
    listed = list(space)
    assert len(listed) == len(set(listed)) == space.size()
    assert set(listed) == _brute_force(depth, stages, chain)
    rng = random.Random(0)
    for _ in range(50):
        a = space.sample(rng)
        assert space.is_valid(a)
        assert space.is_valid(space.mutate(a, rng)) and space.is_valid(space.crossover(a, space.sample(rng), rng))
    # every member builds as a PSViT (the backbone's own checks agree with the space)
    for pool_after, share in listed[::7]:
        PSViT(dict(embed_dims=[8, 16, 24][:stages], num_heads=[1, 2, 3][:stages], depth=depth,
                   pool_after=list(pool_after), share_attn=list(share), patch_size=4), img_size=16)


def test_supernet_weights_give_the_same_network_as_psvit():
    torch.manual_seed(0)
    space = PSViTSearchSpace(5, 3)
    net = PSViTSupernet([8, 16, 24], [1, 2, 3], 5, num_classes=4, space=space, img_size=32,
                        patch_size=4).eval()
    x = torch.randn(2, 3, 32, 32)
    for arch in [((0, 2), (False, ) * 5), ((1, 3), (False, True, False, True, False)),
                 ((2, 3), (False, True, False, False, False))]:
        model = PSViT(net.arch_dict(arch), img_size=32).eval()
        head = torch.nn.Linear(24, 4)
        state = net.subnet_state_dict(arch)
        model.load_state_dict({k[9:]: v for k, v in state.items() if k.startswith('backbone.')})
        head.load_state_dict({'weight': state['head.layers.head.weight'], 'bias': state['head.layers.head.bias']})
        torch.testing.assert_close(head(model(x)[0]), net(x, arch))
    # a sharing layer reuses the V rows of the same weights as its full version
    arch = ((0, 2), (False, False, False, False, True))
    state = net.subnet_state_dict(arch)
    qkv = net.layers[4]['c24h3'].attn.qkv.weight
    torch.testing.assert_close(state['backbone.layers.4.attn.v.weight'], qkv[48:])


def test_supernet_sharing_layer_is_the_backbones_shared_attention(monkeypatch):
    """A sharing layer runs SharedAttention (no second implementation) on the V rows of the full
    block's qkv, and equals the formula written out by hand."""
    from clusterseg.models.layers.token_pool import SharedAttention
    torch.manual_seed(0)
    net = PSViTSupernet([8, 16, 24], [1, 2, 3], 5, num_classes=4, space=PSViTSearchSpace(5, 3),
                        img_size=32, patch_size=4).eval()
    calls = []
    forward = SharedAttention.forward
    monkeypatch.setattr(SharedAttention, 'forward', lambda self, *a, **k: calls.append(1) or forward(self, *a, **k))
    arch = ((0, 2), (False, False, True, False, True))
    x = torch.randn(2, 3, 32, 32)
    net(x, arch)
    assert len(calls) == 2 and not any(isinstance(m, SharedAttention) for m in net.modules())
    # layer 2 by hand: y = x + proj(A (LN(x) W_v^T + b_v)); out = y + MLP(LN(y))
    blk = net.layers[2]['c16h2']
    t, attn = torch.randn(2, 17, 16), torch.softmax(torch.randn(2, 2, 17, 17), -1)  # (B, N, C), (B, h, N, N)
    v = torch.nn.functional.linear(blk.norm1(t), blk.attn.qkv.weight[32:], blk.attn.qkv.bias[32:])
    v = v.view(2, 17, 2, 8).transpose(1, 2)  # (B, h, N, d)
    y = t + blk.attn.proj((attn @ v).transpose(1, 2).reshape(2, 17, 16))
    ref = y + blk.mlp(blk.norm2(y), None)
    torch.testing.assert_close(net._shared_block(2, 'c16h2', t, attn), ref)
    # gradients reach the V rows of the shared qkv weight, not its q / k rows
    net.train()
    net._shared_block(2, 'c16h2', t, attn).sum().backward()
    g = blk.attn.qkv.weight.grad
    assert g[32:].abs().sum() > 0 and g[:32].abs().sum() == 0


def _build_classifier(path):
    cfg = Config.fromfile(path)
    init_default_scope(cfg.default_scope)
    from mmpretrain.registry import MODELS
    return MODELS.build(cfg.model), cfg


def test_search_tool_end_to_end(synthetic_root, tmp_path, capsys):
    data = str(synthetic_root / 'imagenet')
    work = tmp_path / 'search'
    common = ['--data-root', data, '--img-size', '32', '--embed-dims', '16', '32', '48',
              '--num-heads', '1', '2', '3', '--depth', '5', '--batch-size', '16']
    budget = 0.355  # M MACs at 32x32 (the compact set spans 0.340-0.371): about half fits
    proc = run_tool([TOOL, '--work-dir', str(work), '--flops-budget', str(budget), '--epochs', '2',
                     '--export-weights'] + common)
    out = proc.stdout
    assert 'supernet epoch 2/2' in out and 'search: exhaustive' in out and 'config written to' in out
    res = json.load(open(work / 'search_results.json'))
    assert res['best']['mmacs'] <= budget
    assert 0 < len(res['scored']) < res['space_size']  # the budget excluded some architectures
    assert all(s['mmacs'] <= budget for s in res['scored'])
    assert res['best']['top1'] == max(s['top1'] for s in res['scored'])

    cfg_path = str(work / 'psvit-searched_1xb32-10e_synthetic-imagenet-64px.py')
    model, cfg = _build_classifier(cfg_path)
    arch = res['best']['arch']
    assert model.backbone.pool_after == arch['pool_after']
    assert [int(s) for s in model.backbone.share_attn] == arch['share_attn']
    assert cfg.model.head.in_channels == 48
    # our counter on the config's model (mmpretrain classifier, 8 classes) respects the budget
    from tools.analysis_tools.get_flops import main as get_flops
    r = get_flops([cfg_path, '--shape', '32', '32'])
    assert r['macs'] / 1e6 <= budget
    assert abs(r['macs'] / 1e6 - res['best']['mmacs']) < 1e-3
    # the inherited weights load into that model without missing / unexpected keys
    state = torch.load(work / 'psvit-searched_inherited.pth', weights_only=True)['state_dict']
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and not missing

    # in-process from here on (no second interpreter start-up): the trained supernet is reused
    # for an evolutionary search, and an impossible budget is a clear error
    from tools.search.psvit_search import main as search_main
    evo = search_main(['--work-dir', str(tmp_path / 'evo'), '--flops-budget', str(budget),
                       '--supernet-ckpt', str(work / 'supernet.pth'), '--search', 'evolution',
                       '--population', '4', '--generations', '2', '--parents', '2'] + common)
    printed = capsys.readouterr().out
    assert 'generation 2/2' in printed and 'supernet epoch' not in printed
    assert evo['best']['mmacs'] <= budget
    with pytest.raises(SystemExit, match='no architecture fits 0.01 M MACs'):
        search_main(['--work-dir', str(tmp_path / 'bad'), '--flops-budget', '0.01',
                     '--supernet-ckpt', str(work / 'supernet.pth')] + common)


def test_help_has_an_example(capsys):
    from tools.search.psvit_search import parse_args
    with pytest.raises(SystemExit):
        parse_args(['--help'])
    out = capsys.readouterr().out
    assert 'Example:' in out and '--flops-budget' in out and 'make_synthetic_data.py --task cls' in out
