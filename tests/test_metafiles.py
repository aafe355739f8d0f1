"""model-index.yml and the metafiles are consistent with the configs on disk (mim format)."""
import glob
import os.path as osp

import pytest
import yaml

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _metafiles():
    with open(osp.join(REPO, 'model-index.yml')) as f:
        return yaml.safe_load(f)['Import']


def test_model_index_lists_every_method_folder():
    listed = {osp.dirname(p) for p in _metafiles()}
    folders = {osp.relpath(osp.dirname(p), REPO)
               for p in glob.glob(osp.join(REPO, 'configs', '*', '*.py')) if '_base_' not in p
               and '/demo/' not in p and '/custom/' not in p}
    assert folders <= listed, f'method folders without a metafile in model-index.yml: {folders - listed}'


@pytest.mark.parametrize('metafile', _metafiles())
def test_metafile_entries(metafile):
    path = osp.join(REPO, metafile)
    assert osp.exists(path), f'{metafile} is listed in model-index.yml but missing'
    meta = yaml.safe_load(open(path))
    collections = {c['Name'] for c in meta['Collections']}
    names = [m['Name'] for m in meta['Models']]
    assert len(names) == len(set(names)), 'duplicate model names'
    for m in meta['Models']:
        assert m['In Collection'] in collections, m['Name']
        assert osp.exists(osp.join(REPO, m['Config'])), f"{m['Name']}: {m['Config']} does not exist"
        for r in m.get('Results') or []:  # None where no result was published
            assert r['Task'] and r['Dataset'] and r['Metrics'], m['Name']


def test_pacavit_metafile_covers_every_recipe():
    meta = yaml.safe_load(open(osp.join(REPO, 'configs/pacavit/metafile.yml')))
    listed = {m['Config'] for m in meta['Models']}
    recipes = {osp.relpath(p, REPO) for p in glob.glob(osp.join(REPO, 'configs/pacavit/*.py'))
               if 'synthetic' not in p}
    assert recipes == listed
