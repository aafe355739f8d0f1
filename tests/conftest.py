import os
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
# keep tests single-threaded enough for a 2-core machine
os.environ.setdefault('OMP_NUM_THREADS', '2')
