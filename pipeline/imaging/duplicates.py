"""Exact and near duplicates in an image folder, and the pairs that straddle the trainer's test split.

Exact: identical decoded pixels (identical bytes are a special case), distance 0. Near: imagehash's
perceptual hash (pHash, 64 bits) within NEAR_DISTANCE bits, pixels not identical. Torch-free: the audit
(runs/audit.py) and benches call it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image

NEAR_DISTANCE = 2     # pHash bits (of 64) a near duplicate may differ by: 4 paired 93 distinct 8x8 digits, 2 paired 10
PAIR_BLOCK = 128      # rows compared at once: about block x N x 8 bytes (50 MB for 50,000 files)
EXACT, NEAR = "exact", "near"


@dataclass(frozen=True)
class Pair:
    a: int           # indices into the audited files, a < b
    b: int
    kind: str        # EXACT or NEAR
    distance: int    # pHash bits that differ (0 for EXACT)


def fingerprint(img: Image.Image) -> tuple[str, np.ndarray]:
    """(sha256 of the pixels with mode and size, the 64 pHash bits) of one decoded image."""
    pixels = hashlib.sha256(f"{img.mode}{img.size}".encode() + img.tobytes()).hexdigest()
    return pixels, imagehash.phash(img).hash.flatten()


def find_pairs(pixel_hashes: list[str], phash_bits: np.ndarray, near: int = NEAR_DISTANCE) -> list[Pair]:
    """Every exact pair, and every near pair (pHash distance <= near) that is not exact; a < b."""
    pairs: dict[tuple[int, int], Pair] = {}
    groups: dict[str, list[int]] = {}
    for i, h in enumerate(pixel_hashes):
        groups.setdefault(h, []).append(i)
    for members in groups.values():
        for x, a in enumerate(members):
            for b in members[x + 1:]:
                pairs[(a, b)] = Pair(a, b, EXACT, 0)
    if near >= 0 and len(phash_bits):
        packed = np.packbits(phash_bits.astype(np.uint8), axis=1)  # (N, 8) bytes
        ones = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1).astype(np.uint8)
        for start in range(0, len(packed), PAIR_BLOCK):
            block = packed[start:start + PAIR_BLOCK]
            distance = ones[block[:, None, :] ^ packed[None, :, :]].sum(axis=2)  # (block, N) Hamming
            rows, cols = np.nonzero(distance <= near)
            for r, b in zip(rows.tolist(), cols.tolist()):
                a = start + r
                if a < b and (a, b) not in pairs:
                    pairs[(a, b)] = Pair(a, b, NEAR, int(distance[r, b]))
    return sorted(pairs.values(), key=lambda p: (p.kind != EXACT, p.distance, p.a, p.b))


def leaks(pairs: list[Pair], held_out: np.ndarray) -> list[tuple[int, int, str]]:
    """(train index, test index, kind) of each pair with one image in the test split and one outside it."""
    found = []
    for p in pairs:
        if held_out[p.a] != held_out[p.b]:
            train, test = (p.b, p.a) if held_out[p.a] else (p.a, p.b)
            found.append((train, test, p.kind))
    return found
