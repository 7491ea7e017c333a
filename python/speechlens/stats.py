"""Streaming neuron statistics and CKA (C++ core).

    stats = sl.stats.neuron_stats(model, batches, "encoder.blocks.2.mlp.hook_post", n_classes=10)
    stats.mean            # [classes, neurons]; stats.variance, stats.count
    stats.selectivity()   # (mean_in - mean_out) / (|mean_in| + |mean_out|), [classes, neurons]
    stats.dprime()
    sl.stats.cka_matrix(acts_a, acts_b)   # [layers_a, layers_b] linear CKA
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch

from . import _C
from ._inputs import as_inputs, core

NeuronStats = _C.analysis.NeuronStats


def neuron_stats(model, batches: Iterable, hook_name: str, n_classes: int, n_neurons: int | None = None,
                 progress: bool = True) -> NeuronStats:
    """Per-class mean / variance of every neuron at ``hook_name`` over ``batches`` of
    ``(inputs, labels)``: labels [B] per item or [B, T] per frame (-1 skips). Padded frames are
    left out through the batch's feature lengths; activations are never held."""
    if n_neurons is None:
        n_neurons = _width(model, hook_name)
    stats = NeuronStats(n_classes, n_neurons)
    items = batches
    if progress:
        try:
            from tqdm.auto import tqdm
            items = tqdm(batches, desc="neuron stats", unit="batch", leave=False)
        except ImportError:
            pass
    for inputs, labels in items:
        _C.analysis.accumulate_neuron_stats(core(model), as_inputs(model, inputs), hook_name,
                                            torch.as_tensor(labels), stats)
    return stats


def _width(model, hook_name: str) -> int:
    cfg = model.cfg
    if "mlp.hook_pre" in hook_name or "mlp.hook_post" in hook_name:
        return cfg.d_mlp_decoder if hook_name.startswith("decoder.") and "d_mlp_decoder" in cfg else cfg.d_mlp
    return cfg.d_model


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two representations [N, D1], [N, D2] of the same N examples."""
    return _C.analysis.linear_cka(x, y)


def cka_matrix(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """[len(a), len(b)] linear CKA; ``b`` defaults to ``a`` (layers of one model)."""
    return _C.analysis.cka_matrix(list(a), list(a if b is None else b))
