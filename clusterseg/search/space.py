"""The PSViT search space ("compact set").

PSViT learns "the number of tokens in each layer and the choices of layers sharing attention"
from data (arXiv 2108.03428, abstract). An architecture of our compact set [R] (docs/en/psvit.md)
is ``(pool_after, share_attn)`` for a fixed width schedule (``embed_dims`` / ``num_heads`` per
stage, ``depth`` layers): ``pool_after`` holds ``num_stages - 1`` strictly increasing layer
indices (optionally restricted to ``pool_candidates``); ``share_attn`` marks layers that reuse the
previous layer's map, never the first layer of a stage, and at most ``max_share_chain``
consecutive sharing layers.
"""
import itertools
import random

from clusterseg.models.backbones.psvit import _stage_of_layers


class PSViTSearchSpace:
    """The compact set of pooling positions and sharing masks.

    Args:
        depth (int): number of layers L.
        num_stages (int): token resolutions (number of poolings + 1).
        pool_candidates (Sequence[int] | None): layers after which a pooling may sit
            (default: every layer 0..L-2).
        max_share_chain (int): most consecutive sharing layers (1: a map is reused once).
    """

    def __init__(self, depth, num_stages, pool_candidates=None, max_share_chain=1):
        self.depth, self.num_stages = depth, num_stages
        cands = list(range(depth - 1)) if pool_candidates is None else sorted(set(pool_candidates))
        if any(not 0 <= p < depth - 1 for p in cands) or len(cands) < num_stages - 1:
            raise ValueError(f'pool_candidates must hold >= {num_stages - 1} layer indices in '
                             f'0..{depth - 2}, got {cands}')
        self.pool_candidates = cands
        if max_share_chain < 0:
            raise ValueError(f'max_share_chain must be >= 0, got {max_share_chain}')
        self.max_share_chain = max_share_chain

    # -------------------------------------------------------------- membership
    def repair(self, pool_after, share):
        """Make ``share`` valid for ``pool_after``: stage-first layers full, chains cut."""
        stage = _stage_of_layers(self.depth, pool_after)
        out, run = [], 0
        for l in range(self.depth):
            ok = bool(share[l]) and l > 0 and stage[l] == stage[l - 1] and run < self.max_share_chain
            out.append(ok)
            run = run + 1 if ok else 0
        return tuple(out)

    def is_valid(self, arch):
        pool_after, share = arch
        return (len(pool_after) == self.num_stages - 1 and list(pool_after) == sorted(set(pool_after))
                and all(p in self.pool_candidates for p in pool_after) and len(share) == self.depth
                and self.repair(pool_after, share) == tuple(share))

    def pool_choices(self):
        return list(itertools.combinations(self.pool_candidates, self.num_stages - 1))

    def share_choices(self, pool_after):
        """All valid sharing masks for one pooling layout."""
        stage = _stage_of_layers(self.depth, pool_after)
        masks = [()]
        for l in range(self.depth):
            new = []
            for m in masks:
                new.append(m + (False, ))
                run = 0
                while run < len(m) and m[len(m) - 1 - run]:
                    run += 1
                if l > 0 and stage[l] == stage[l - 1] and run < self.max_share_chain:
                    new.append(m + (True, ))
            masks = new
        return masks

    def __iter__(self):
        for pool_after in self.pool_choices():
            for share in self.share_choices(pool_after):
                yield (tuple(pool_after), share)

    def size(self):
        return sum(len(self.share_choices(p)) for p in self.pool_choices())

    # -------------------------------------------------------------- sampling
    def sample(self, rng=random):
        pool_after = tuple(sorted(rng.sample(self.pool_candidates, self.num_stages - 1)))
        share = tuple(rng.random() < 0.5 for _ in range(self.depth))
        return pool_after, self.repair(pool_after, share)

    def mutate(self, arch, rng=random, prob=0.3):
        """Move each pooling to a neighbouring candidate and flip each share bit with ``prob``."""
        pool_after, share = list(arch[0]), list(arch[1])
        for i in range(len(pool_after)):
            if rng.random() < prob:
                pool_after[i] = rng.choice(self.pool_candidates)
        pool_after = sorted(set(pool_after))
        while len(pool_after) < self.num_stages - 1:  # collisions: refill
            pool_after = sorted(set(pool_after) | {rng.choice(self.pool_candidates)})
        share = [(not s) if rng.random() < prob else s for s in share]
        return tuple(pool_after), self.repair(pool_after, share)

    def crossover(self, a, b, rng=random):
        pool_after = a[0] if rng.random() < 0.5 else b[0]
        share = [x if rng.random() < 0.5 else y for x, y in zip(a[1], b[1])]
        return tuple(pool_after), self.repair(pool_after, share)
