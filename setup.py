"""clusterseg: clustering-attention vision models for OpenMMLab 2.x.

Install through `make install` (docs/en/get_started.md): it builds mmcv 2.1.0 with CPU ops
first, which pip cannot do from install_requires alone.
"""
import os.path as osp
import re

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_requirements(name):
    """Requirement lines of requirements/NAME (comments and blanks dropped; ``-r OTHER`` lines
    replaced by the lines of requirements/OTHER, as pip reads them)."""
    with open(osp.join(HERE, 'requirements', name)) as f:
        lines = [ln.split('#')[0].strip() for ln in f if ln.split('#')[0].strip()]
    out = []
    for ln in lines:
        if ln.startswith('-r'):
            out += read_requirements(ln[2:].strip())
        else:
            out.append(ln)
    return out


def get_version():
    with open(osp.join(HERE, 'clusterseg', 'version.py')) as f:
        return re.search(r"__version__ = '([^']+)'", f.read()).group(1)


# torch is pinned in requirements/runtime.txt for our machines; a user who brings another CUDA
# build of torch >= 2.1 should not have pip replace it, so the package itself asks only for >= 2.1.
install_requires = [r if not r.startswith(('torch==', 'torchvision==')) else r.split('==')[0]
                    for r in read_requirements('runtime.txt')]
install_requires = ['torch>=2.1' if r == 'torch' else r for r in install_requires]

setup(
    name='clusterseg',
    version=get_version(),
    description='Clustering-attention vision models (PaCa-ViT, ClusTR, PSViT, kMaX-DeepLab) '
                'for mmpretrain, mmdet and mmseg',
    long_description=open(osp.join(HERE, 'README.md')).read(),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('configs', 'tools', 'tests', 'docs')),
    python_requires='>=3.9',
    install_requires=install_requires + read_requirements('mminstall.txt'),
    extras_require={
        'tests': read_requirements('tests.txt'),
        'docs': read_requirements('docs.txt'),
        'deploy': read_requirements('deploy.txt'),
    },
    license='Apache License 2.0',
    zip_safe=False,
)
