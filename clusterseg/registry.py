"""clusterseg's registries: children of MMEngine's root registries.

Each registry lists ``locations``, so a config in any scope (``mmseg``, ``mmdet``, ``mmpretrain``)
can say ``type='clusterseg.PaCaViT'``: MMEngine imports ``clusterseg.registry`` for the
``clusterseg.`` prefix and then the modules in ``locations``, with no ``custom_imports``.
Registries whose ``locations`` are empty have no clusterseg modules yet: add the package that
defines the first one to its ``locations``.
Unprefixed lookups from inside clusterseg fall back to MMEngine's roots only, never to
mmdet/mmseg/mmpretrain: name those with their scope prefix (``'mmdet.CrossEntropyLoss'``).
"""
from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import RUNNER_CONSTRUCTORS as MMENGINE_RUNNER_CONSTRUCTORS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.registry import TASK_UTILS as MMENGINE_TASK_UTILS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import WEIGHT_INITIALIZERS as MMENGINE_WEIGHT_INITIALIZERS
from mmengine.registry import Registry

RUNNERS = Registry('runner', parent=MMENGINE_RUNNERS, locations=['clusterseg.engine'])
RUNNER_CONSTRUCTORS = Registry(
    'runner constructor', parent=MMENGINE_RUNNER_CONSTRUCTORS, locations=['clusterseg.engine'])
LOOPS = Registry('loop', parent=MMENGINE_LOOPS, locations=['clusterseg.engine'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, locations=['clusterseg.engine'])

DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, locations=['clusterseg.datasets'])
DATA_SAMPLERS = Registry(
    'data sampler', parent=MMENGINE_DATA_SAMPLERS, locations=['clusterseg.datasets'])
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS, locations=['clusterseg.datasets'])

MODELS = Registry('model', parent=MMENGINE_MODELS, locations=['clusterseg.models'])
MODEL_WRAPPERS = Registry(
    'model_wrapper', parent=MMENGINE_MODEL_WRAPPERS, locations=['clusterseg.models'])
WEIGHT_INITIALIZERS = Registry(
    'weight initializer', parent=MMENGINE_WEIGHT_INITIALIZERS, locations=['clusterseg.models'])
TASK_UTILS = Registry('task util', parent=MMENGINE_TASK_UTILS, locations=['clusterseg.models'])

OPTIMIZERS = Registry('optimizer', parent=MMENGINE_OPTIMIZERS, locations=['clusterseg.engine'])
OPTIM_WRAPPERS = Registry(
    'optim_wrapper', parent=MMENGINE_OPTIM_WRAPPERS, locations=['clusterseg.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor', parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS, locations=[])
PARAM_SCHEDULERS = Registry(
    'parameter scheduler', parent=MMENGINE_PARAM_SCHEDULERS, locations=['clusterseg.engine'])

METRICS = Registry('metric', parent=MMENGINE_METRICS, locations=[])
EVALUATOR = Registry('evaluator', parent=MMENGINE_EVALUATOR, locations=[])

VISUALIZERS = Registry(
    'visualizer', parent=MMENGINE_VISUALIZERS, locations=['clusterseg.visualization'])
VISBACKENDS = Registry(
    'vis_backend', parent=MMENGINE_VISBACKENDS, locations=[])
