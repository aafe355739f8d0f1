"""PSViT architecture search: the compact set of pooling positions and sharing masks
(:mod:`.space`), its weight-sharing supernet (:mod:`.supernet`), candidate costs (:mod:`.cost`),
the exhaustive / evolutionary loops (:mod:`.evolution`) and the end-to-end run
(:mod:`.pipeline`); ``tools/search/psvit_search.py`` is its command line."""
from .cost import CandidateClassifier, CandidateCost
from .evolution import NoCandidateError, evolutionary_search, exhaustive_search
from .space import PSViTSearchSpace
from .supernet import PSViTSupernet

__all__ = ['CandidateClassifier', 'CandidateCost', 'NoCandidateError', 'PSViTSearchSpace',
           'PSViTSupernet', 'evolutionary_search', 'exhaustive_search']
