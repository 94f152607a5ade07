"""Which text towers a query is worth asking, by the script it is written in.

MiniLM (all-MiniLM-L6-v2) was trained on English: Devanagari, Arabic or CJK text reaches it
mostly as unknown word pieces, and its vector for a Hindi query is noise that drags down e5's
good one when the two are mixed 50/50. A variant that routes sends a query written mostly in a
non-Latin script to its multilingual towers alone; a Latin-script query keeps every tower.
"""

from __future__ import annotations

import unicodedata

import numpy as np

# Towers trained on many languages and scripts.
MULTILINGUAL = frozenset({"e5"})


def mostly_non_latin(text: str) -> bool:
    """True when under half of the letters are Latin (a-z, or accented: é, ở). Only letters
    count: digits, punctuation and Devanagari's vowel signs (combining marks, not letters) say
    nothing either way."""
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and 2 * sum(_latin(c) for c in letters) < len(letters)


def _latin(letter: str) -> bool:
    return letter.isascii() or unicodedata.name(letter, "").startswith("LATIN ")


def tower_weights(texts: list[str], towers: tuple[str, ...], route: bool) -> np.ndarray:
    """(n, len(towers)) weights whose squares sum to 1, so a joint vector of unit parts stays
    unit: equal shares, or, when routing, only the multilingual towers for non-Latin queries."""
    equal = np.full(len(towers), 1 / np.sqrt(len(towers)), np.float32)
    weights = np.tile(equal, (len(texts), 1))
    multi = np.array([t in MULTILINGUAL for t in towers])
    if route and multi.any() and not multi.all():
        routed = np.array([mostly_non_latin(t) for t in texts], bool)
        weights[routed] = np.where(multi, 1 / np.sqrt(multi.sum()), 0.0)
    return weights


def joint_vectors(weights: np.ndarray, dims: list[int], embed) -> np.ndarray:
    """Per-tower unit vectors, embed(i) -> (n, dims[i]), times their per-text weights and side
    by side. A tower no text needs (all its weights 0) is not run: zeros stand in."""
    parts = []
    for i, dim in enumerate(dims):
        w = weights[:, i : i + 1]
        parts.append(w * embed(i) if w.any() else np.zeros((len(weights), dim), np.float32))
    return np.concatenate(parts, axis=1)
