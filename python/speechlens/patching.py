"""Activation patching and attribution patching sweeps (C++ core, batched forwards).

    res = sl.patching.activation_patching(
        model, clean=(clean_mel, tokens), corrupted=(corrupt_mel, tokens),
        hooks="encoder.blocks.*.hook_resid_pre", metric=lambda logits: logits[:, -1, a] - logits[:, -1, b],
        sweep="position", window=30, normalize=True)
    res.values            # [hooks, position windows]; res.hook_names, res.slot_labels
    sl.plot.patching_heatmap(res)

``hooks`` is a name, a glob, a compiled regex, a callable name -> bool, or a list of those.
``sweep`` is ``"position"`` (windows of ``window`` positions along dim 1), ``"head"`` (each
index of dim 2, e.g. ``attn.hook_z``) or ``"whole"`` (each hook's whole activation).
``reverse=True`` patches corrupted activations into the clean run instead. ``normalize=True``
reports ``(patched - corrupted) / (clean - corrupted)`` in both directions (so with ``reverse``
1 means "the corruption at this slot changed nothing" and 0 "it did all the damage"). Many configurations share one forward
(the target input repeated along the batch); ``max_batch`` bounds the rows of one forward.
The metric maps logits ``[batch, ...]`` to one value per batch item.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

import torch

from . import _C
from ._inputs import as_inputs, core

Metric = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class PatchingResult:
    values: torch.Tensor                   # [hooks, slots] or [hooks]; float64
    hook_names: list[str]
    axis_names: list[str]
    slot_labels: list[str]
    slot_ranges: list[tuple[int, int]]
    clean_metric: float
    corrupted_metric: float
    normalized: bool
    reverse: bool
    sweep: str
    method: str
    forwards: int

    @classmethod
    def _from_core(cls, r, method: str) -> "PatchingResult":
        return cls(r.values, list(r.hook_names), list(r.axis_names), list(r.slot_labels),
                   [tuple(x) for x in r.slot_ranges], r.clean_metric, r.corrupted_metric, r.normalized,
                   r.reverse, r.sweep, method, r.forwards)

    def layer_labels(self) -> list[str]:
        """Short row labels: ``enc 3 resid_pre``-style."""
        return [_short_hook(n) for n in self.hook_names]


def _short_hook(name: str) -> str:
    parts = name.split(".")
    if len(parts) >= 4 and parts[1] == "blocks":
        return f"{parts[0][:3]} {parts[2]} {'.'.join(parts[3:]).replace('hook_', '')}"
    return name.replace("hook_", "")


def _progress(description: str, progress: bool):
    if not progress:
        return (lambda done, total: None), None  # silences the C++ progress log too
    try:
        from tqdm.auto import tqdm
    except ImportError:  # the C++ log line reports progress instead
        return None, None
    bar = tqdm(desc=description, unit="config", leave=False)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return update, bar


def _run(fn, method: str, model, clean, corrupted, hooks, metric, sweep, window, positions, reverse, normalize,
         max_batch, progress) -> PatchingResult:
    if not callable(metric):
        raise TypeError("metric must be a callable logits -> tensor [batch]")
    if isinstance(hooks, (tuple, set)):
        hooks = list(hooks)  # a list selects the union of its members (resolved in C++)
    update, bar = _progress(method, progress)
    try:
        result = fn(core(model), as_inputs(model, clean), as_inputs(model, corrupted), hooks, metric, sweep,
                    window, _position_range(positions), reverse, normalize, max_batch, update)
    finally:
        if bar is not None:
            bar.close()
    return PatchingResult._from_core(result, method)


def activation_patching(model, clean: Any, corrupted: Any, hooks, metric: Metric, sweep: str = "position",
                        window: int = 1, reverse: bool = False, normalize: bool = False, max_batch: int = 64,
                        progress: bool = True, positions: tuple[int, int] | None = None) -> PatchingResult:
    """Patch source activations into the target run, one slot at a time, batched.

    ``values`` holds the metric of each patched run (mean over the input batch), or the
    normalised recovery with ``normalize=True``. ``positions=(begin, end)`` limits a position
    sweep to those positions (e.g. the frames that hold speech)."""
    return _run(_C.analysis.activation_patching, "activation", model, clean, corrupted, hooks, metric, sweep,
                window, positions, reverse, normalize, max_batch, progress)


def attribution_patching(model, clean: Any, corrupted: Any, hooks, metric: Metric, sweep: str = "position",
                         window: int = 1, reverse: bool = False, normalize: bool = False,
                         progress: bool = False, positions: tuple[int, int] | None = None) -> PatchingResult:
    """First-order estimate of :func:`activation_patching` from one forward and one backward:
    ``values`` = target metric + (source_act - target_act) . d metric / d act, summed per slot."""
    return _run(_C.analysis.attribution_patching, "attribution", model, clean, corrupted, hooks, metric, sweep,
                window, positions, reverse, normalize, 1, progress)


def _position_range(positions) -> tuple[int, int]:
    if positions is None:
        return (0, -1)
    begin, end = positions
    return (int(begin or 0), -1 if end is None else int(end))


def logit_diff_metric(position: int, correct: int, incorrect: int) -> Metric:
    """logits[:, position, correct] - logits[:, position, incorrect], per batch item."""
    def metric(logits: torch.Tensor) -> torch.Tensor:
        return logits[:, position, correct] - logits[:, position, incorrect]
    return metric


def logprob_metric(position: int, token: int) -> Metric:
    """log p(token) at ``position``, per batch item."""
    def metric(logits: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(logits[:, position].float(), dim=-1)[:, token]
    return metric
