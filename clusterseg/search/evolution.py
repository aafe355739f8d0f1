"""Search loops over a compact set under a MACs budget: exhaustive, or evolutionary (mutation +
crossover of the top-k parents). Both only see candidates through two callables, so they are
independent of the supernet: ``macs(arch) -> M MACs`` and ``evaluate(arch) -> (top-1, -loss)``
(compared as a tuple: higher is better); each candidate is evaluated once."""
from clusterseg.utils.progress import track


class NoCandidateError(ValueError):
    """No architecture of the compact set fits the budget."""


def describe(arch):
    """``(pool_after, share)`` -> ``'pool_after=[1, 3] share=FSFFSF'``."""
    return f'pool_after={list(arch[0])} share={"".join("S" if s else "F" for s in arch[1])}'


def exhaustive_search(space, macs, budget, evaluate, log=print, progress=True):
    """Evaluate every member of ``space`` within ``budget`` -> (best, {arch: score})."""
    size = space.size()
    fit, cheapest = [], float('inf')
    for a in track(space, size, 'counting MACs', progress):
        cost = macs(a)
        cheapest = min(cheapest, cost)
        if cost <= budget:
            fit.append(a)
    if not fit:
        raise NoCandidateError(f'no architecture fits {budget} M MACs: the cheapest needs '
                               f'{cheapest:.2f} M')
    log(f'{len(fit)} of {size} fit the budget; scoring them')
    scores = {}
    for a in track(fit, desc='scoring candidates', enabled=progress):
        scores[a] = evaluate(a)
    return max(scores, key=lambda a: scores[a]), scores


def evolutionary_search(space, macs, budget, evaluate, rng, population=16, generations=5,
                        parents=4, mutation_prob=0.3, log=print, progress=True):
    """Evolution within ``budget`` -> (best, {arch: score}).

    A first population of ``population`` distinct candidates sampled within the budget; each
    generation evaluates its population, keeps the ``parents`` best candidates scored so far and
    breeds the next population from them (half mutation, half crossover, unseen candidates
    only, re-sampled until they fit the budget).
    """
    seen = []  # every cost computed, for the error message

    def cost(a):
        c = macs(a)
        seen.append(c)
        return c

    def sample_fit(make, tries=200):
        for _ in range(tries):
            a = make()
            if cost(a) <= budget:
                return a
        return None

    pop = []
    for _ in range(population * 10):
        a = sample_fit(lambda: space.sample(rng))
        if a is None:
            break
        if a not in pop:
            pop.append(a)
        if len(pop) == population:
            break
    if not pop:
        raise NoCandidateError(f'no sampled architecture fits {budget} M MACs (cheapest seen: '
                               f'{min(seen):.2f} M)')
    scores = {}
    for gen in range(generations):
        for a in track(pop, desc=f'generation {gen + 1}/{generations}: scoring', enabled=progress):
            if a not in scores:
                scores[a] = evaluate(a)
        ranked = sorted(scores, key=lambda a: scores[a], reverse=True)
        top = ranked[:parents]
        best = ranked[0]
        log(f'generation {gen + 1}/{generations}: best {describe(best)} top-1 {scores[best][0]:.1f}% '
            f'({macs(best):.2f} M MACs); {len(scores)} scored')
        if gen == generations - 1:
            break
        children = []
        for _ in range(population * 10):
            if len(children) == population:
                break
            if rng.random() < 0.5:
                a = sample_fit(lambda: space.mutate(rng.choice(top), rng, mutation_prob), 20)
            else:
                a = sample_fit(lambda: space.crossover(rng.choice(top), rng.choice(top), rng), 20)
            if a is not None and a not in scores and a not in children:
                children.append(a)
        pop = children or pop
    return max(scores, key=lambda a: scores[a]), scores
