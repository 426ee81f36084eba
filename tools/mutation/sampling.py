"""The stratified sample of the mutation runner and the interval of its kill rate (pure functions)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping


def allocate(populations: Mapping[str, int], size: int) -> dict[str, int]:
    """How many mutants to draw per stratum: proportional to its population, at least one from
    every non-empty stratum, ``size`` in all (or every mutant, when there are fewer).

    Largest remainder: each stratum gets the floor of its quota, and the strata with the largest
    fractional parts (then the largest populations, then by name) one more until ``size`` is met.
    """
    total = sum(populations.values())
    if total <= size:
        return dict(populations)
    quota = {k: size * n / total for k, n in populations.items()}
    counts = {k: min(n, max(1 if n else 0, math.floor(quota[k]))) for k, n in populations.items()}
    order = sorted(
        populations, key=lambda k: (-(quota[k] - math.floor(quota[k])), -populations[k], k)
    )
    while sum(counts.values()) < size:
        for k in order:
            if sum(counts.values()) < size and counts[k] < populations[k]:
                counts[k] += 1
    while sum(counts.values()) > size:  # the minimum of one overshot: take back from the largest
        k = max((k for k in counts if counts[k] > 1), key=lambda k: (counts[k], k))
        counts[k] -= 1
    return counts


def draw_key(seed: int, mutant_id: str) -> str:
    """The mutant's place in the seeded random order: a keyed hash of its id."""
    return hashlib.sha256(f"{seed}:{mutant_id}".encode()).hexdigest()


def choose(ids: Iterable[str], k: int, seed: int) -> list[str]:
    """A uniform random ``k``-subset of ``ids``, fixed by ``seed``: the ``k`` ids first in
    :func:`draw_key` order, returned sorted.

    Because each id's place depends on the id alone, a mutant that stays in the population keeps
    its place when others appear or vanish (an edit elsewhere in the module), so the sample and
    the results recorded for it carry over.
    """
    return sorted(sorted(set(ids), key=lambda m: draw_key(seed, m))[:k])


def wilson(successes: int, trials: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson's score interval of a binomial proportion (95 % for the default ``z``); (0, 1) without trials."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = (
        z / (1 + z * z / trials) * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    )
    return max(0.0, centre - half), min(1.0, centre + half)
