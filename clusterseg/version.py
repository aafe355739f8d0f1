"""Version of clusterseg and the OpenMMLab versions it is tested with."""

__version__ = '0.1.0'

# Package -> (lowest allowed, highest allowed exclusive, tested version).
# mmdet 3.3.0 / mmseg 1.2.2 assert mmcv < 2.2.0, and mmcv 2.1.0 is the newest release below that.
MM_REQUIREMENTS = {
    'mmengine': ('0.10.7', '1.0.0', '0.10.7'),
    'mmcv': ('2.1.0', '2.2.0', '2.1.0'),
    'mmdet': ('3.3.0', '3.4.0', '3.3.0'),
    'mmsegmentation': ('1.2.2', '1.3.0', '1.2.2'),
    'mmpretrain': ('1.2.0', '1.3.0', '1.2.0'),
}


def parse_version_info(version_str):
    """Parse a version string into a tuple of ints and strings (e.g. '1.2.0rc1' -> (1, 2, 0, 'rc1'))."""
    parts = []
    for x in version_str.split('+')[0].split('.'):
        if x.isdigit():
            parts.append(int(x))
        else:
            num = ''.join(c for c in x if c.isdigit())
            if num:
                parts.append(int(num))
            parts.append(x[len(num):] if x.startswith(num) else x)
    return tuple(parts)


version_info = parse_version_info(__version__)
