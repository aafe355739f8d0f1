"""Import-time check that the installed OpenMMLab packages are the versions clusterseg supports."""
import os
from importlib import metadata

from packaging.version import Version

from clusterseg.version import MM_REQUIREMENTS

SKIP_ENV = 'CLUSTERSEG_SKIP_VERSION_CHECK'


def check_mm_versions(requirements=None, get_version=None):
    """Raise ``ImportError`` naming every mm* package whose installed version is outside its pin.

    Args:
        requirements (dict | None): ``{dist_name: (min, max_exclusive, tested)}``;
            defaults to :data:`clusterseg.version.MM_REQUIREMENTS`.
        get_version (callable | None): ``dist_name -> version str`` (raises
            ``metadata.PackageNotFoundError`` if missing); defaults to
            :func:`importlib.metadata.version`. Injected in tests.
    """
    if os.environ.get(SKIP_ENV) == '1':
        return
    requirements = MM_REQUIREMENTS if requirements is None else requirements
    get_version = get_version or metadata.version
    problems = []
    for dist, (low, high, tested) in requirements.items():
        try:
            found = get_version(dist)
        except metadata.PackageNotFoundError:
            problems.append(f'{dist} is not installed (clusterseg needs {dist}=={tested})')
            continue
        if not Version(low) <= Version(found) < Version(high):
            problems.append(f'{dist}=={found} is installed, but clusterseg needs '
                            f'{dist}>={low},<{high} (pinned: {dist}=={tested})')
    if problems:
        raise ImportError(
            'clusterseg: incompatible OpenMMLab installation:\n  - ' + '\n  - '.join(problems) +
            '\nInstall the pinned stack with `make install` (see requirements/mminstall.txt and '
            f'docs/en/get_started.md), or set {SKIP_ENV}=1 to import anyway at your own risk.')
