"""Seeds derived from (run seed, step, purpose), so any step can be redone exactly after a resume."""

from __future__ import annotations

import numpy as np

# Purposes: each random stream of a step has its own tag.
SAMPLE, VALIDATE, SHUFFLE, PROMPTS = 1, 2, 3, 4


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers, independent across different ``parts`` (numpy ``SeedSequence``)."""
    return int(
        np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0] >> 1
    )


def rng(*parts: int) -> np.random.Generator:
    return np.random.default_rng(derive_seed(*parts))


def prompt_indices(seed: int, step: int, batch: int, n: int) -> np.ndarray:
    """Indices of the ``batch`` prompts of ``step`` (1-based) from a pool of ``n``.

    The pool is walked in epochs, each a fresh permutation seeded by (seed, epoch): every prompt is seen once
    per epoch, and step k's prompts depend only on (seed, k), never on what ran before.
    """
    start = (step - 1) * batch
    out = np.empty(batch, dtype=np.int64)
    perms: dict[int, np.ndarray] = {}
    for j in range(batch):
        epoch, pos = divmod(start + j, n)
        if epoch not in perms:
            perms[epoch] = rng(seed, PROMPTS, epoch).permutation(n)
        out[j] = perms[epoch][pos]
    return out
