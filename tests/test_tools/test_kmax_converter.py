"""tools/model_converters/kmax_d2_to_clusterseg.py on a state dict built here in detectron2's layout."""
import os.path as osp
import re

import pytest
import torch

from tests.conftest import REPO, run_tool

CONFIG = osp.join(REPO, 'configs/kmax_deeplab/kmax-deeplab_r18-tiny_1xb2-300it_synthetic-coco-panoptic-128x128.py')

# clusterseg module names that the PyTorch port spells with a leading underscore (spec kmax.md §6)
_UNDERSCORED = {
    'in_norms', 'stages', 'blocks', 'conv1_bn_act', 'conv2_bn_act', 'conv3_bn', 'shortcut', 'attention',
    'height_axis', 'width_axis', 'query_rpe', 'key_rpe', 'value_rpe', 'embeddings', 'batch_norm_similarity',
    'batch_norm_retrieved_output', 'resized_fuses', 'conv_bn_low', 'conv_bn_high', 'cluster_centers',
    'kmax_transformer_layers', 'pixel_conv1_bn_act', 'query_conv1_bn_act', 'query_qkv_conv_bn',
    'pixel_v_conv_bn', 'query_conv3_bn', 'query_ffn_conv1_bn_act', 'query_ffn_conv2_bn',
    'kmeans_query_conv3_bn', 'kmeans_query_batch_norm_retrieved_value', 'query_self_attention',
    'batch_norm_retrieved_value', 'pixel_space_head_conv0bnact', 'pixel_space_head_conv1bnact',
    'pixel_space_head_last_convbn', 'transformer_mask_head', 'transformer_class_head',
    'pixel_space_mask_batch_norm', 'class_embedding_projection', 'mask_embedding_projection'}


def to_d2_key(key):
    """clusterseg key -> the key the detectron2 port would save (written from the spec's layout)."""
    if key.startswith('backbone.'):
        k = key[len('backbone.'):]
        if k == 'conv1.weight':
            return 'backbone.stem.conv1.weight'
        if k.startswith('bn1.'):
            return 'backbone.stem.conv1.norm.' + k[4:]
        m = re.match(r'layer(\d)\.(\d+)\.(.+)$', k)
        stage, block, rest = m.groups()
        rest = re.sub(r'^conv(\d)\.weight$', r'conv\1.weight', rest)
        rest = re.sub(r'^bn(\d)\.', r'conv\1.norm.', rest)
        rest = rest.replace('downsample.0.weight', 'shortcut.weight').replace('downsample.1.', 'shortcut.norm.')
        return f'backbone.res{int(stage) + 1}.{block}.{rest}'
    k = key[len('panoptic_head.'):]
    if k.startswith('aux_semantic_head.'):
        k = k[len('aux_semantic_head.'):]
        k = re.sub(r'^aspp\.aspp_dilated\.(\d)\.', lambda m: f'_aspp._aspp_conv{int(m.group(1)) + 1}.', k)
        k = re.sub(r'^aspp\.(aspp_conv0|aspp_pool|proj_conv_bn_act)\.', r'_aspp._\1.', k)
        k = re.sub(r'^low_level_projection\.(\d)\.', lambda m: f'_low_level_projection_os{8 >> int(m.group(1))}.', k)
        k = re.sub(r'^low_level_fusion_conv(\d)\.(\d)\.',
                   lambda m: f'_low_level_fusion_os{8 >> int(m.group(2))}_conv{m.group(1)}_bn_act.', k)
        return 'sem_seg_head.predictor._auxiliary_semantic_predictor.' + k
    k = k.replace('qkv_transform.norm.', '_batch_norm_qkv.')
    parts = [('_' + p if p in _UNDERSCORED else p) for p in k.split('.')]
    parts = ['_predcitor' if p == 'predictor' else p for p in parts]  # the port's typo
    if parts[0] == 'transformer_decoder':
        parts[0] = 'predictor'
    return 'sem_seg_head.' + '.'.join(parts)


@pytest.fixture(scope='module')
def model_state():
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmdet.registry import MODELS

    import clusterseg.models  # noqa: F401
    cfg = Config.fromfile(CONFIG)
    init_default_scope('mmdet')
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    return MODELS.build(cfg.model).state_dict()


def load_converter():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'kmax_conv', osp.join(REPO, 'tools/model_converters/kmax_d2_to_clusterseg.py'))
    conv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conv)
    return conv


def test_d2_state_dict_converts_back_exactly(model_state):
    conv = load_converter()
    d2 = {to_d2_key(k): v.clone() for k, v in model_state.items()}
    assert 'sem_seg_head.predictor._predcitor._pixel_space_mask_batch_norm.weight' in d2
    assert 'backbone.res2.0.conv1.norm.running_var' in d2
    d2['pixel_mean'] = torch.zeros(3, 1, 1)  # non-persistent in the port; must be dropped
    out, unknown = conv.convert(d2)
    assert unknown == []
    assert set(out) == set(model_state)
    assert all(torch.equal(out[k], model_state[k]) for k in model_state)
    # the mmseg head takes the same head keys under decode_head.
    seg, _ = conv.convert(d2, head_prefix='decode_head')
    assert any(k.startswith('decode_head.transformer_decoder.') for k in seg)
    _, unknown = conv.convert({'sem_seg_head.some_new_module.weight': torch.zeros(1)})
    assert unknown == ['sem_seg_head.some_new_module.weight']


def test_converter_cli_checks_against_config(model_state, tmp_path):
    d2 = {to_d2_key(k): v for k, v in model_state.items()}
    src = str(tmp_path / 'kmax_d2.pth')
    torch.save({'model': d2, 'iteration': 10}, src)
    dst = str(tmp_path / 'out.pth')
    proc = run_tool(['tools/model_converters/kmax_d2_to_clusterseg.py', src, dst, '--config', CONFIG])
    assert 'tensors fit' in proc.stdout
    saved = torch.load(dst, map_location='cpu')['state_dict']
    assert torch.equal(saved['panoptic_head.transformer_decoder.cluster_centers.weight'],
                       model_state['panoptic_head.transformer_decoder.cluster_centers.weight'])
    # a checkpoint that does not fit the config fails loudly, listing the keys (in-process: faster)
    from clusterseg.utils.state_dict import StateDictMismatchError
    d2.pop('sem_seg_head.predictor._cluster_centers.weight')
    state, _ = load_converter().convert(d2)
    with pytest.raises(StateDictMismatchError, match='cluster_centers.weight'):
        load_converter().check_against_config(state, CONFIG)
