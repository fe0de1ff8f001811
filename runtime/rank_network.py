"""Selection networks for the median of n values: the comparators of Batcher's odd-even merge sort (wires past n
dropped: they hold +∞, so those comparators change nothing), then only the ones the middle wire depends on.

A comparator (a, b), a < b, leaves min at wire a and max at wire b; :func:`median_network` also says which of the
two outputs is read later, so a graph or a loop computes only those. Median of 9: 24 comparators; 25: 113; 49: 319.

    >>> import numpy as np
    >>> values = list(np.array([[5.], [1.], [4.], [2.], [3.]]))
    >>> for a, b, low, high in median_network(5):
    ...     values[a], values[b] = np.minimum(values[a], values[b]), np.maximum(values[a], values[b])
    >>> float(values[2][0])
    3.0
"""

from __future__ import annotations

from functools import lru_cache


def _batcher(size: int) -> list[tuple[int, int]]:
    """Comparators of Batcher's odd-even merge sort of ``size`` (a power of two) wires, in order."""
    pairs, p = [], 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return pairs


@lru_cache(maxsize=64)
def median_network(n: int) -> tuple[tuple[int, int, bool, bool], ...]:
    """(a, b, min read, max read) per comparator, in order: afterwards wire n // 2 holds the median of n values."""
    size = 1
    while size < n:
        size *= 2
    pairs = [(a, b) for a, b in _batcher(size) if b < n]
    need, kept = {n // 2}, []
    for a, b in reversed(pairs):
        if a in need or b in need:
            kept.append((a, b, a in need, b in need))
            need |= {a, b}
    return tuple(reversed(kept))
