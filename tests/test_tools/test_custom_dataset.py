"""docs/en/custom_dataset.md ("Bring your own data") is true: every command of the page runs.

A small street-scene set (64x64 images) is written in each of the page's layouts (images + PNG
masks, COCO instances json, COCO panoptic json + PNGs, ImageNet-style class folders) with numpy,
PIL and json, in a workspace whose ``configs/`` and ``tools/`` are the repository's, so that the
page's commands run there as written (``data/my_seg`` ... are the generated sets). Every path of
the page's layout blocks must exist in the generated set.

The commands are read from the page's shell blocks, so the page and the test cannot drift. The
test adds to them only ``--cfg-options``, as the page's smoke-run paragraph describes: a schedule of
one or two iterations without validation during training (``tools/test.py`` evaluates),
``num_workers=0``, 64-pixel inputs and fewer Mask R-CNN proposals (for time, in train and test
alike); and ``tools/test.py`` gets the checkpoint the short run wrote (its ``last_checkpoint``)
in place of the full run's ``iter_300.pth`` / ``epoch_12.pth``, in the same work dir. The three
commands of a config (browse, train, test) run in one fresh interpreter, one after another, each
as its script's ``__main__`` (see ``DRIVER``): about 2.5 minutes in all on 2 busy CPU cores.
"""
import json
import os
import os.path as osp
import re

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.conftest import PYTHON, REPO, run_tool
from tests.test_docs import code_blocks, shell_commands

PAGE = osp.join(REPO, 'docs', 'en', 'custom_dataset.md')

# the scene vocabulary of the page's examples: stuff first, then things (semantic ids 0..4)
CLASSES = ('sky', 'grass', 'road', 'car', 'person')
COLOURS = {'sky': (110, 160, 220), 'grass': (60, 150, 60), 'road': (90, 90, 95),
           'car': (200, 40, 40), 'person': (240, 200, 40)}
THINGS = ('car', 'person')
STUFF = ('sky', 'grass', 'road')
IGNORE = 255
SIZE = 64
SPLITS = {'train': 2, 'val': 1}  # images per split (per class for classification)

# What the test adds to the page's commands (see the module docstring), per config:
# (options for train and test: smaller inputs, fewer proposals; options for train only: the schedule)
SEG = 'pacahead_pacavit-tiny_1xb4-300it_custom-seg-128x128.py'
DET = 'mask-rcnn_pacavit-tiny_fpn_1xb4-12e_custom-coco-128x128.py'
PAN = 'kmax-deeplab_r18-tiny_1xb2-300it_custom-coco-panoptic-128x128.py'
CLS = 'pacavit-tiny_1xb32-10e_custom-cls-64px.py'
DET_64 = [f'{k}_dataloader.dataset.pipeline.{i}.scale=(106,64)'
          for k, i in (('train', 2), ('val', 1), ('test', 1))]
SMALL = {
    SEG: ['train_dataloader.dataset.pipeline.2.scale=(256,64)',
          'train_dataloader.dataset.pipeline.3.crop_size=(64,64)',
          'val_dataloader.dataset.pipeline.1.scale=(256,64)',
          'test_dataloader.dataset.pipeline.1.scale=(256,64)', 'model.data_preprocessor.size=(64,64)'],
    DET: DET_64 + ['model.train_cfg.rpn_proposal.max_per_img=100', 'model.train_cfg.rcnn.sampler.num=64',
                   'model.test_cfg.rpn.max_per_img=100'],
    PAN: DET_64 + ['model.input_size=(64,64)'],
    CLS: [],
}
# one or two iterations, no validation during training (tools/test.py evaluates)
SMOKE = {
    SEG: ['train_cfg.max_iters=1', 'train_cfg.val_begin=2', 'train_dataloader.batch_size=2'],
    DET: ['train_cfg.max_epochs=1', 'train_cfg.val_begin=2', 'train_dataloader.batch_size=2'],
    PAN: ['train_cfg.max_iters=1', 'train_cfg.val_begin=2'],
    CLS: ['train_cfg.max_epochs=2', 'train_cfg.val_begin=3', 'train_dataloader.batch_size=6'],
}
NO_WORKERS = [f'{k}_dataloader.{o}' for k in ('train', 'val', 'test')
              for o in ('num_workers=0', 'persistent_workers=False')]


# ------------------------------------------------------------------------------------ the data
def _scene(rng):
    """A street scene: sky over grass (left) and road (right), a car on the road, a person on
    the grass, and a 2-pixel unlabelled strip at the bottom. Returns the RGB image, the class-id
    map (255 = unlabelled) and the things as ``(class, polygon, mask)``."""
    h = w = SIZE
    label = np.zeros((h, w), np.uint8)
    horizon, split = int(rng.integers(h * 3 // 10, h // 2)), int(rng.integers(w // 3, w // 2))
    label[horizon:, :split] = CLASSES.index('grass')
    label[horizon:, split:] = CLASSES.index('road')
    cw, ch = int(rng.integers(14, 20)), int(rng.integers(8, 12))
    cx, cy = int(rng.integers(split + 1, w - cw - 1)), int(rng.integers(horizon, h - ch - 3))
    px, py = int(rng.integers(2, split - 10)), int(rng.integers(horizon - 12, h - 24))
    things = [('car', [(cx, cy), (cx + cw, cy), (cx + cw, cy + ch), (cx, cy + ch)]),
              ('person', [(px + 4, py), (px + 8, py + 4), (px + 8, py + 20), (px + 4, py + 22),
                          (px, py + 20), (px, py + 4)])]
    out = []
    for name, poly in things:
        canvas = Image.new('L', (w, h), 0)
        ImageDraw.Draw(canvas).polygon(poly, fill=1)
        mask = np.asarray(canvas).astype(bool)
        label[mask] = CLASSES.index(name)
        out.append((name, poly, mask))
    label[-2:] = IGNORE
    palette = np.array([COLOURS[c] for c in CLASSES] + [(128, 128, 128)], np.float32)
    img = palette[np.minimum(label, len(CLASSES))] + rng.normal(0, 12, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8), label, out


def _bbox(mask):
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def _stem(split, i):
    """The page's file names: 0001, 0002 ... for training, 0101 ... for validation."""
    return f'{(0 if split == "train" else 100) + i + 1:04d}'


def _scenes(seed):
    rng = np.random.default_rng(seed)
    for split, n in SPLITS.items():
        for i in range(n):
            yield split, _stem(split, i), _scene(rng)


def make_semantic(root):
    for split, stem, (img, label, _) in _scenes(0):
        os.makedirs(osp.join(root, 'img_dir', split), exist_ok=True)
        os.makedirs(osp.join(root, 'ann_dir', split), exist_ok=True)
        Image.fromarray(img).save(osp.join(root, 'img_dir', split, stem + '.jpg'), quality=95)
        Image.fromarray(label).save(osp.join(root, 'ann_dir', split, stem + '.png'))


def make_coco_instances(root):
    cats = [dict(id=i + 1, name=n) for i, n in enumerate(THINGS)]
    data = {s: dict(images=[], annotations=[], categories=cats) for s in SPLITS}
    for split, stem, (img, _, things) in _scenes(1):
        os.makedirs(osp.join(root, split), exist_ok=True)
        Image.fromarray(img).save(osp.join(root, split, stem + '.jpg'), quality=95)
        d = data[split]
        image_id = len(d['images']) + 1
        d['images'].append(dict(id=image_id, file_name=stem + '.jpg', height=SIZE, width=SIZE))
        for name, poly, mask in things:
            d['annotations'].append(dict(
                id=len(d['annotations']) + 1, image_id=image_id, category_id=THINGS.index(name) + 1,
                segmentation=[[float(v) for xy in poly for v in xy]], area=int(mask.sum()),
                bbox=_bbox(mask), iscrowd=0))
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    for split, d in data.items():
        with open(osp.join(root, 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump(d, f)


def make_coco_panoptic(root):
    names = THINGS + STUFF  # things first, then stuff
    cats = [dict(id=i + 1, name=n, isthing=int(n in THINGS), supercategory=n)
            for i, n in enumerate(names)]
    data = {s: dict(images=[], annotations=[], categories=cats) for s in SPLITS}
    for split, stem, (img, label, things) in _scenes(2):
        os.makedirs(osp.join(root, split), exist_ok=True)
        os.makedirs(osp.join(root, 'annotations', f'panoptic_{split}'), exist_ok=True)
        Image.fromarray(img).save(osp.join(root, split, stem + '.jpg'), quality=95)
        ids = np.zeros((SIZE, SIZE), np.int64)  # 0 = VOID
        segments = []
        regions = [(n, label == CLASSES.index(n)) for n in STUFF]
        regions += [(n, mask) for n, _, mask in things]
        for name, mask in regions:
            if mask.any():
                segment_id = len(segments) + 1
                ids[mask] = segment_id
                segments.append(dict(id=segment_id, category_id=names.index(name) + 1,
                                     area=int(mask.sum()), bbox=_bbox(mask), iscrowd=0))
        rgb = np.stack([ids % 256, ids // 256 % 256, ids // 256 ** 2], -1).astype(np.uint8)
        Image.fromarray(rgb).save(osp.join(root, 'annotations', f'panoptic_{split}', stem + '.png'))
        d = data[split]
        image_id = len(d['images']) + 1
        d['images'].append(dict(id=image_id, file_name=stem + '.jpg', height=SIZE, width=SIZE))
        d['annotations'].append(dict(image_id=image_id, file_name=stem + '.png',
                                     segments_info=segments))
    for split, d in data.items():
        with open(osp.join(root, 'annotations', f'panoptic_{split}.json'), 'w') as f:
            json.dump(d, f)


def make_class_folders(root):
    rng = np.random.default_rng(3)
    tints = {'bicycle': (60, 160, 60), 'car': (200, 40, 40), 'person': (240, 200, 40)}
    for split, n in SPLITS.items():
        for name, tint in tints.items():
            os.makedirs(osp.join(root, split, name), exist_ok=True)
            for i in range(n):
                img = np.clip(np.float32(tint) + rng.normal(0, 25, (SIZE, SIZE, 3)), 0, 255)
                Image.fromarray(img.astype(np.uint8)).save(
                    osp.join(root, split, name, _stem(split, i) + '.jpg'), quality=95)


LAYOUTS = {'data/my_seg': make_semantic, 'data/my_coco': make_coco_instances,
           'data/my_panoptic': make_coco_panoptic, 'data/my_cls': make_class_folders}


# ------------------------------------------------------------------------------------ the page
def page_trees():
    """{data root: [paths]} of the page's layout blocks (a ``text`` block whose first line is a
    data root ``data/.../`` and whose indented lines start with a path below it)."""
    trees = {}
    for lang, body, _, _ in code_blocks(open(PAGE).read()):
        lines = body.splitlines()
        if lang != 'text' or not lines or not re.match(r'^data/\w+/$', lines[0]):
            continue
        root = lines[0].rstrip('/')
        trees[root] = [osp.join(root, ln.split()[0]) for ln in lines[1:]
                       if ln.startswith('  ') and ln.strip()]
    return trees


def page_commands():
    """The page's commands, in page order, as token lists."""
    return [tokens for _, tokens in shell_commands(PAGE)]


TOOLS = ('tools/analysis_tools/browse_dataset.py', 'tools/train.py', 'tools/test.py')


def _config_of(tokens):
    return next(t for t in tokens if t.startswith('configs/custom/'))


def _with_options(tokens, options):
    """``tokens`` with ``options`` added to its ``--cfg-options`` (or a new one)."""
    tokens = list(tokens)
    if '--cfg-options' in tokens:
        i = tokens.index('--cfg-options') + 1
        return tokens[:i] + options + tokens[i:]
    return tokens + ['--cfg-options'] + options


def _option(tokens, name):
    return tokens[tokens.index(name) + 1] if name in tokens else None


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    ws = tmp_path_factory.mktemp('custom_dataset')
    for name in ('configs', 'tools'):
        os.symlink(osp.join(REPO, name), ws / name)
    for root, make in LAYOUTS.items():
        make(str(ws / root))
    return ws


def test_page_describes_every_layout_and_command():
    assert set(page_trees()) == set(LAYOUTS)
    ran = set()
    for tokens in page_commands():
        assert tokens[0] == 'python' and tokens[1] in TOOLS, f'not run by this test: {tokens}'
        config = next((t for t in tokens if t.startswith('configs/custom/')), None)
        assert config and osp.basename(config) in SMOKE, f'not a configs/custom/ config: {tokens}'
        ran.add((tokens[1], osp.basename(config)))
    # each config is browsed, trained and tested
    assert ran == {(tool, config) for tool in TOOLS for config in SMOKE}


def test_generated_sets_have_the_page_layout(workspace):
    for root, paths in page_trees().items():
        for path in paths:
            assert osp.exists(workspace / path), f'{path} of the page is not in the generated set'


# Runs ``python SCRIPT ARGS...`` for each command of a json list, one after another in this one
# interpreter, each as its script's ``__main__`` (so the mm* imports are paid once per config, not
# once per command). Between commands the per-name singletons of MMEngine (visualizers, loggers,
# message hubs, scopes) are dropped, as a new process would have none. ``@last_checkpoint@DIR``
# is replaced by the checkpoint that DIR/last_checkpoint names when the command starts.
DRIVER = """
import json, os.path as osp, runpy, sys, time
from mmengine.utils import ManagerMixin

def managed(cls):
    yield cls
    for sub in cls.__subclasses__():
        yield from managed(sub)

for argv in json.loads(sys.argv[1]):
    argv = [open(osp.join(a[len('@last_checkpoint@'):], 'last_checkpoint')).read().strip()
            if a.startswith('@last_checkpoint@') else a for a in argv]
    print('[page command] python ' + ' '.join(argv), flush=True)
    start, sys.argv = time.perf_counter(), list(argv)
    try:
        runpy.run_path(argv[0], run_name='__main__')
    except SystemExit as e:
        if e.code not in (None, 0):
            raise
    print(f'[page command] {osp.basename(argv[0])} done in {time.perf_counter() - start:.0f}s',
          flush=True)
    for cls in managed(ManagerMixin):
        cls._instance_dict.clear()
"""


@pytest.mark.parametrize('config', list(SMOKE))
def test_page_commands_run(config, workspace):
    """Browse, train (smoke schedule), test: the page's commands for one config, in page order."""
    commands = [t for t in page_commands() if osp.basename(_config_of(t)) == config]
    assert [t[1] for t in commands] == list(TOOLS), 'browse, train, then test'
    browse, train, test = commands
    train_dir = _option(train, '--work-dir')
    documented = test[3]  # the full run's checkpoint, in the work dir of the train command
    assert osp.dirname(documented) == train_dir == _option(test, '--work-dir'), documented
    argvs = [browse[1:],
             _with_options(train, SMALL[config] + SMOKE[config] + NO_WORKERS +
                           ['default_hooks.logger.interval=1'])[1:],
             _with_options(test[1:3] + [f'@last_checkpoint@{train_dir}'] + test[4:],
                           SMALL[config] + NO_WORKERS)]
    proc = run_tool([PYTHON, '-c', DRIVER, json.dumps(argvs)], cwd=str(workspace))
    print(config, ', '.join(re.findall(r'\[page command\] (\S+ done in \d+s)', proc.stdout)))
    assert proc.stdout.count('done in') == 3, proc.stdout[-3000:]

    # browse_dataset.py: one PNG per training image (up to --num), drawn at least at image size
    out_dir = workspace / _option(browse, '--output-dir')
    pngs = sorted(p for p in os.listdir(out_dir) if p.endswith('.png'))
    num = int(_option(browse, '--num') or 10)
    assert len(pngs) == min(num, SPLITS['train'] * (3 if config == CLS else 1)), pngs
    for p in pngs:
        with Image.open(out_dir / p) as im:
            assert im.format == 'PNG' and min(im.size) >= SIZE
    assert 'drawn to' in proc.stdout
    # train.py: a checkpoint; test.py: the metrics of that checkpoint
    work_dir = workspace / train_dir
    assert osp.isfile(open(work_dir / 'last_checkpoint').read().strip())
    metrics = json.load(open(work_dir / 'test_metrics.json'))
    assert metrics and all(isinstance(v, (int, float)) for v in metrics.values()), metrics
    assert '[clusterseg] metrics written to' in proc.stdout


def test_browse_dataset_names_a_missing_data_root(tmp_path):
    config = 'configs/custom/pacahead_pacavit-tiny_1xb4-300it_custom-seg-128x128.py'
    proc = run_tool(['tools/analysis_tools/browse_dataset.py', config, '--not-show',
                     '--output-dir', str(tmp_path), '--cfg-options',
                     'train_dataloader.dataset.data_root=/nonexistent/my_seg'], check=False)
    assert proc.returncode != 0
    assert "'/nonexistent/my_seg'" in proc.stderr and 'train_dataloader.dataset.data_root' in proc.stderr
    assert 'Traceback' not in proc.stderr


def test_browse_dataset_val_phase_draws_in_the_original_frame(workspace, tmp_path):
    """The test pipeline loads the annotations after Resize (in the original image's frame): the
    image is drawn at its original size, and the panoptic segments on it."""
    run_tool(['tools/analysis_tools/browse_dataset.py', f'configs/custom/{PAN}', '--phase', 'val',
              '--num', '1', '--not-show', '--output-dir', str(tmp_path)], cwd=str(workspace))
    assert os.listdir(tmp_path) == ['0101.png']
    with Image.open(tmp_path / '0101.png') as im:
        drawn = np.asarray(im.convert('RGB'))
    assert drawn.shape == (SIZE, SIZE, 3)
    with Image.open(workspace / 'data/my_panoptic/val/0101.jpg') as im:
        original = np.asarray(im.convert('RGB'))
    assert np.abs(drawn.astype(int) - original).mean() > 10  # segments are drawn over the image
