from importlib import metadata

import pytest

from clusterseg.utils.version_check import SKIP_ENV, check_mm_versions
from clusterseg.version import MM_REQUIREMENTS

REQ = {'mmcv': ('2.1.0', '2.2.0', '2.1.0'), 'mmdet': ('3.3.0', '3.4.0', '3.3.0')}


def test_installed_stack_passes():
    check_mm_versions()  # the venv's own stack is the pinned one
    for dist, (low, high, tested) in MM_REQUIREMENTS.items():
        assert metadata.version(dist) == tested


def test_wrong_version_names_package_and_pin(monkeypatch):
    monkeypatch.delenv(SKIP_ENV, raising=False)
    versions = {'mmcv': '2.2.0', 'mmdet': '3.3.0'}
    with pytest.raises(ImportError) as e:
        check_mm_versions(REQ, versions.__getitem__)
    msg = str(e.value)
    assert 'mmcv==2.2.0 is installed' in msg and 'mmcv>=2.1.0,<2.2.0' in msg
    assert 'mmdet' not in msg.split('clusterseg needs', 1)[1].split('\n')[0]


def test_missing_package_named(monkeypatch):
    monkeypatch.delenv(SKIP_ENV, raising=False)

    def get(dist):
        if dist == 'mmdet':
            raise metadata.PackageNotFoundError(dist)
        return '2.1.0'

    with pytest.raises(ImportError, match='mmdet is not installed'):
        check_mm_versions(REQ, get)


def test_skip_env(monkeypatch):
    monkeypatch.setenv(SKIP_ENV, '1')
    check_mm_versions(REQ, {'mmcv': '9.0.0', 'mmdet': '0.1'}.__getitem__)
