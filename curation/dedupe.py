"""Near-duplicate detection with MinHash and locality-sensitive hashing (plain Python + NumPy).

Texts are cut into word 3-gram shingles; each text gets a MinHash signature of ``NUM_PERM`` values,
and texts whose signatures collide in one LSH band are compared: those whose estimated Jaccard
similarity reaches the threshold are joined into one group.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Iterable

import numpy as np

from curation.text import normalise

NUM_PERM = 64
_MASK32 = np.uint64(0xFFFFFFFF)
_BAND_OPTIONS = ((32, 2), (16, 4), (8, 8), (4, 16))


def shingles(text: str, size: int = 3) -> np.ndarray:
    words = normalise(text).split()
    if len(words) < size:
        grams = [" ".join(words)]
    else:
        grams = [" ".join(words[i : i + size]) for i in range(len(words) - size + 1)]
    return np.fromiter((zlib.crc32(gram.encode("utf-8", "surrogatepass")) for gram in grams), dtype=np.uint64)


class MinHasher:
    def __init__(self, num_perm: int = NUM_PERM, seed: int = 1):
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, 2**61 - 1, size=num_perm, dtype=np.uint64) | np.uint64(1)
        self.b = rng.integers(0, 2**61 - 1, size=num_perm, dtype=np.uint64)

    def signature(self, text: str) -> np.ndarray:
        values = shingles(text)
        # Multiply-shift hashing: wraps mod 2**64 on purpose, the high 32 bits are well mixed.
        hashed = (values[:, None] * self.a[None, :] + self.b[None, :]) >> np.uint64(32)
        return (hashed & _MASK32).min(axis=0).astype(np.uint32)


def choose_bands(threshold: float, num_perm: int = NUM_PERM) -> tuple[int, int]:
    """The (bands, rows) split whose S-curve starts just below the threshold (few misses)."""
    for bands, rows in reversed(_BAND_OPTIONS):
        if bands * rows == num_perm and (1 / bands) ** (1 / rows) <= threshold:
            return bands, rows
    return _BAND_OPTIONS[0]


def near_duplicate_groups(
    items: Iterable[tuple[int, str]], *, threshold: float, progress=None, total: int | None = None
) -> list[tuple[list[int], float]]:
    """Groups of ids (in input order) whose texts are at least ``threshold`` similar, with the lowest similarity."""
    if not 0 < threshold <= 1:
        raise ValueError("The similarity threshold must be above 0 and at most 1.")
    hasher = MinHasher()
    bands, rows = choose_bands(threshold)
    ids: list[int] = []
    signatures: list[np.ndarray] = []
    buckets: list[dict[bytes, int]] = [{} for _ in range(bands)]
    parent: dict[int, int] = {}
    similarity: dict[int, float] = {}

    def find(index: int) -> int:
        while parent.get(index, index) != index:
            index = parent[index]
        return index

    for position, (item_id, text) in enumerate(items):
        signature = hasher.signature(text)
        ids.append(item_id)
        signatures.append(signature)
        for band in range(bands):
            key = signature[band * rows : (band + 1) * rows].tobytes()
            first = buckets[band].setdefault(key, position)
            if first == position:
                continue
            root = find(first)
            if find(position) == root:
                continue
            estimate = float(np.mean(signatures[first] == signature))
            if estimate >= threshold:
                parent[position] = root
                similarity[root] = min(similarity.get(root, 1.0), estimate)
                break
        if progress and total and position % 1000 == 0:
            progress(position / total)

    members: dict[int, list[int]] = defaultdict(list)
    for position in parent:
        members[find(position)].append(position)
    groups = []
    for root, others in members.items():
        positions = sorted([root, *others])
        groups.append(([ids[p] for p in positions], round(similarity.get(root, 1.0), 3)))
    groups.sort(key=lambda group: group[0][0])
    return groups
