"""Linear probes (C++/Eigen): ridge regression (closed form) and L2 multinomial logistic
regression, each with a seeded held-out split and a shuffled-labels control.

    acts = [sl.probes.pool_frames(cache[f"encoder.blocks.{i}.hook_resid_post"], mask) for i in range(n)]
    results = sl.probes.probe_layers(acts, labels, kind="logistic")
    [(r.test_score, r.control_score) for r in results]
"""
from __future__ import annotations

from typing import Sequence

import torch

from . import _C

ProbeResult = _C.analysis.ProbeResult


def train_probe(x: torch.Tensor, y: torch.Tensor, kind: str = "logistic", l2: float = 1e-2,
                test_fraction: float = 0.25, seed: int = 0, max_iter: int = 500, control: bool = True) -> ProbeResult:
    """x [N, D]; y [N] int class ids (logistic, scored by accuracy) or floats (ridge, scored by R2)."""
    return _C.analysis.train_probe(torch.as_tensor(x), torch.as_tensor(y), kind, l2, test_fraction, seed, max_iter,
                                   control)


def probe_layers(per_layer: Sequence[torch.Tensor], y: torch.Tensor, kind: str = "logistic",
                 progress: bool = True, **options) -> list[ProbeResult]:
    """One probe per layer on the same labels and split."""
    items = list(per_layer)
    if progress:
        try:
            from tqdm.auto import tqdm
            items = tqdm(items, desc="probes", unit="layer", leave=False)
        except ImportError:
            pass
    return [train_probe(x, y, kind, **options) for x in items]


def pool_frames(activations: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over valid frames: [B, T, D] -> [B, D]."""
    return _C.analysis.pool_frames(activations, mask)


def flatten_frames(activations: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None):
    """Per-frame examples: ([n_valid, D], [n_valid]) from [B, T, D] and [B, T] labels."""
    return _C.analysis.flatten_frames(activations, labels, mask)
