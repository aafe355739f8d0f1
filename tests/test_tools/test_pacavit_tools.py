"""get_flops.py and the official-checkpoint converter on PaCa-ViT configs."""
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from clusterseg.models.backbones import PaCaViT
from clusterseg.utils.state_dict import StateDictMismatchError

CFG = 'configs/pacavit/pacavit-tiny_8xb128-300e_in1k.py'


def test_get_flops_prints_the_table_numbers(capsys):
    from tools.analysis_tools.get_flops import main
    r = main([CFG, '--shape', '224', '224'])
    assert abs(r['params'] / 1e6 - 12.20) < 0.01 and abs(r['macs'] / 1e9 - 3.22) / 3.22 < 0.01
    out = capsys.readouterr().out
    assert 'params : 12.20 M' in out and 'MACs   : 3.24 G' in out


def test_get_flops_on_a_segmentor():
    from tools.analysis_tools.get_flops import main
    r = main(['configs/pacavit/pacahead_pacavit-tiny_1xb4-300it_synthetic-ade20k-128x128.py',
              '--shape', '128', '128'])
    backbone = main(['configs/pacavit/pacahead_pacavit-tiny_1xb4-300it_synthetic-ade20k-128x128.py',
                     '--shape', '128', '128', '--backbone-only'])
    assert r['macs'] > backbone['macs'] > 0 and r['params'] > backbone['params']


def _official_imagenet_checkpoint(path):
    """A state dict in the released timm layout (raw keys, ``head.*``), with its reference model."""
    torch.manual_seed(0)
    backbone = PaCaViT('tiny').eval()
    backbone.init_weights()
    head = torch.nn.Linear(384, 1000)
    state = dict(backbone.state_dict())
    state.update({'head.weight': head.weight.detach(), 'head.bias': head.bias.detach()})
    torch.save(state, path)

    def reference(x):  # the reference classifier: mean over tokens of the normed stage 4, then head
        return head(backbone(x)[-1].flatten(2).mean(-1))
    return reference


def test_converter_gives_the_same_logits(tmp_path):
    from tools.model_converters.pacavit2clusterseg import main
    src, dst = str(tmp_path / 'IMNET_224_pacavit_tiny_p2cconv_100_0.pth'), str(tmp_path / 'out.pth')
    reference = _official_imagenet_checkpoint(src)
    main([src, dst, '--config', CFG])
    cfg = Config.fromfile(CFG)
    init_default_scope('mmpretrain')
    from mmpretrain.registry import MODELS
    model = MODELS.build(cfg.model).eval()
    from mmengine.runner import load_checkpoint
    load_checkpoint(model, dst, strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x, mode='tensor'), reference(x), rtol=1e-4, atol=1e-4)


def test_converter_refuses_weights_that_do_not_fit(tmp_path):
    from tools.model_converters.pacavit2clusterseg import main
    src = str(tmp_path / 'small.pth')
    torch.save(PaCaViT('small').state_dict(), src)  # small weights, tiny config
    with pytest.raises(StateDictMismatchError, match='unexpected keys'):
        main([src, str(tmp_path / 'out.pth'), '--config', CFG])
