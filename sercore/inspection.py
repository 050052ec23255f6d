"""Looking inside the mechanisms: their equivalent T x T attention matrices, and a check that each matrix
really is what the mechanism computes (forward rebuilt from the matrix equals forward).

Used by the mechanisms chapter; meant for small T, since every matrix is materialised.
"""

from __future__ import annotations

import torch

from sercore.attention import SEQUENCE_NAMES, build


def _mixers(names, dim: int, heads: int, seed: int, options: dict | None):
    for name in names:
        torch.manual_seed(seed)
        yield name, build(name, dim, heads, **(options or {}).get(name, {})).double().eval()


def example_input(length: int = 48, dim: int = 64, seed: int = 0, padding: int = 0):
    """A seeded random sequence [1, length, dim] (fp64) and its mask, the last `padding` tokens padded."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, length, dim, generator=generator, dtype=torch.float64)
    mask = torch.arange(length)[None] < length - padding
    return x, mask


@torch.no_grad()
def attention_matrices(names=SEQUENCE_NAMES, x=None, mask=None, dim: int = 64, heads: int = 4, seed: int = 0,
                       options: dict | None = None) -> dict:
    """{mechanism: [H, T, T] numpy array} for the first sample of x (default: example_input())."""
    if x is None:
        x, mask = example_input(dim=dim, seed=seed)
    return {name: mixer.attention_matrix(x, mask)[0].numpy() for name, mixer in _mixers(names, dim, heads, seed,
                                                                                          options)}


@torch.no_grad()
def matrix_consistency(names=SEQUENCE_NAMES, length: int = 48, dim: int = 64, heads: int = 4, seed: int = 0,
                       padding: int = 8, options: dict | None = None):
    """One row per mechanism: relative error between forward and forward rebuilt from attention_matrix,
    and whether a padded run's real tokens equal the run without padding (fp64)."""
    import pandas as pd

    x, mask = example_input(length, dim, seed, padding)
    rows = []
    for name, mixer in _mixers(names, dim, heads, seed, options):
        out = mixer(x, mask)
        rebuilt = mixer.forward_from_matrix(x, mixer.attention_matrix(x, mask), mask)
        alone = mixer(x[:, : length - padding])
        rows.append({
            "mechanism": name,
            "matrix vs forward (rel. error)": float((rebuilt - out).norm() / out.norm()),
            "padded vs alone (rel. error)": float((out[:, : length - padding] - alone).norm() / alone.norm()),
        })
    return pd.DataFrame(rows).set_index("mechanism")
