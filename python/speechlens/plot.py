"""Figures for the analysis toolkit (matplotlib). Each function returns a Figure;
``save(fig, path)`` writes it (PNG/SVG/PDF by extension) and closes it.

    fig = sl.plot.patching_heatmap(result, spectrogram=mel[0])
    sl.plot.save(fig, "patching.png")
"""
from __future__ import annotations

import pathlib
from typing import Sequence

import torch


def _plt():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        try:
            matplotlib.use("Agg", force=False)
        except Exception:
            pass
    import matplotlib.pyplot as plt

    return plt


def save(fig, path, dpi: int = 100) -> pathlib.Path:
    """Writes ``fig`` to ``path`` (folders created) and closes it."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    _plt().close(fig)
    return path


def _np(t):
    return t.detach().float().cpu().numpy() if isinstance(t, torch.Tensor) else t


def patching_heatmap(result, spectrogram: torch.Tensor | None = None, token_labels: Sequence[str] | None = None,
                     title: str | None = None, cmap: str = "RdBu_r", frames_per_position: int = 2):
    """Hooks x slots heatmap of a patching result. With ``spectrogram`` [n_mels, mel_frames] a
    strip above shows the audio the position windows cover (encoder positions are
    ``frames_per_position`` mel frames each); with ``token_labels`` the columns are named by
    the decoder tokens."""
    plt = _plt()
    values = _np(result.values)
    if values.ndim == 1:
        values = values[:, None]
    rows = getattr(result, "layer_labels", lambda: result.hook_names)()
    with_spec = spectrogram is not None and result.sweep == "position"
    fig, axes = plt.subplots(2 if with_spec else 1, 1, figsize=(max(6, 0.12 * values.shape[1] + 3), 1.2 + 0.35 * len(rows) + (1.6 if with_spec else 0)),
                             gridspec_kw={"height_ratios": [1.6, 0.35 * len(rows) + 0.6]} if with_spec else None,
                             squeeze=False, constrained_layout=True)
    ax = axes[-1, 0]
    limit = float(abs(values[~(values != values)]).max()) if values.size else 1.0
    image = ax.imshow(values, aspect="auto", cmap=cmap, vmin=-limit if limit else -1, vmax=limit if limit else 1,
                      interpolation="nearest")
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    labels = list(token_labels) if token_labels is not None else list(result.slot_labels)
    if labels:
        step = max(1, len(labels) // 25)
        ax.set_xticks(range(0, len(labels), step), labels[::step], rotation=60 if token_labels is None else 30,
                      fontsize=7, ha="right")
    ax.set_xlabel(result.axis_names[-1] if result.axis_names else "")
    what = "normalised recovery" if result.normalized else "patched metric"
    fig.colorbar(image, ax=ax, label=what, shrink=0.9)
    if with_spec:
        spec = _np(spectrogram)
        top = axes[0, 0]
        top.imshow(spec, aspect="auto", origin="lower", cmap="magma")
        top.set_ylabel("mel")
        top.set_xticks([])
        end = result.slot_ranges[-1][1] * frames_per_position if result.slot_ranges else spec.shape[1]
        top.set_xlim(-0.5, min(spec.shape[1], end) - 0.5)
    (axes[0, 0]).set_title(title or f"{result.method} patching ({result.sweep}, "
                           f"clean {result.clean_metric:.3g}, corrupted {result.corrupted_metric:.3g})", fontsize=9)
    return fig


def attention_pattern(pattern: torch.Tensor, spectrogram: torch.Tensor | None = None, query: int | None = None,
                      title: str = "attention pattern", frames_per_position: int = 2):
    """Self-attention over audio frames. ``pattern`` [query, key] (one head): a heatmap; with
    ``query`` the row of that query drawn over the ``spectrogram`` [n_mels, mel_frames]."""
    plt = _plt()
    p = _np(pattern)
    if query is None or spectrogram is None:
        fig, ax = plt.subplots(figsize=(5, 4.5), constrained_layout=True)
        im = ax.imshow(p, aspect="auto", cmap="viridis", origin="upper")
        ax.set_xlabel("key frame")
        ax.set_ylabel("query frame")
        fig.colorbar(im, ax=ax)
        ax.set_title(title, fontsize=9)
        return fig
    spec = _np(spectrogram)
    fig, ax = plt.subplots(figsize=(8, 3), constrained_layout=True)
    ax.imshow(spec, aspect="auto", origin="lower", cmap="gray_r", alpha=0.6)
    ax2 = ax.twinx()
    x = [i * frames_per_position for i in range(p.shape[-1])]
    ax2.plot(x, p[query], color="C3")
    ax2.axvline(query * frames_per_position, color="C0", ls="--", lw=1)
    ax.set_xlabel("mel frame")
    ax.set_ylabel("mel bin")
    ax2.set_ylabel("attention weight")
    ax.set_title(f"{title} (query frame {query})", fontsize=9)
    return fig


def cross_attention_alignment(pattern: torch.Tensor, token_labels: Sequence[str] | None = None,
                              spectrogram: torch.Tensor | None = None, title: str = "cross-attention",
                              frames_per_position: int = 2):
    """Decoder cross-attention [tokens, audio frames] (one head or a head mean) as a token x time
    alignment, with the spectrogram above when given."""
    plt = _plt()
    p = _np(pattern)
    n = 2 if spectrogram is not None else 1
    fig, axes = plt.subplots(n, 1, figsize=(8, 1.5 + 0.3 * p.shape[0] + (1.5 if n == 2 else 0)), squeeze=False,
                             sharex=False, constrained_layout=True)
    ax = axes[-1, 0]
    extent = (0, p.shape[1] * frames_per_position, p.shape[0] - 0.5, -0.5)
    im = ax.imshow(p, aspect="auto", cmap="viridis", extent=extent, interpolation="nearest")
    ax.set_yticks(range(p.shape[0]), token_labels if token_labels is not None else range(p.shape[0]), fontsize=8)
    ax.set_xlabel("mel frame")
    fig.colorbar(im, ax=ax, shrink=0.8)
    if n == 2:
        axes[0, 0].imshow(_np(spectrogram), aspect="auto", origin="lower", cmap="magma",
                          extent=(0, _np(spectrogram).shape[1], 0, _np(spectrogram).shape[0]))
        axes[0, 0].set_xlim(0, extent[1])
        axes[0, 0].set_xticks([])
    axes[0, 0].set_title(title, fontsize=9)
    return fig


def lens_table(lens, token_strings=None, item: int = 0, k: int = 1, title: str = "logit lens"):
    """Layer x position table of each layer's top prediction, coloured by its probability.
    ``token_strings``: a callable id -> str or a sequence indexed by id (default: the id)."""
    plt = _plt()
    probs = torch.softmax(lens.logits[:, item].float(), dim=-1)
    top_p, top_id = probs.max(-1)  # [layers, tokens]
    name = token_strings if callable(token_strings) else (
        (lambda i: str(token_strings[i])) if token_strings is not None else str)
    layers, tokens = top_id.shape
    fig, ax = plt.subplots(figsize=(1.1 * tokens + 2, 0.45 * layers + 1.2), constrained_layout=True)
    im = ax.imshow(_np(top_p), aspect="auto", cmap="Blues", vmin=0, vmax=1)
    for i in range(layers):
        for j in range(tokens):
            ax.text(j, i, name(int(top_id[i, j]))[:10], ha="center", va="center", fontsize=7,
                    color="white" if top_p[i, j] > 0.6 else "black")
    rows = [n.replace("decoder.blocks.", "dec ").replace("encoder.blocks.", "enc ").replace(".hook_resid_post", "")
            .replace(".hook_resid_pre", " pre") for n in getattr(lens, "hook_names", [str(i) for i in range(layers)])]
    ax.set_yticks(range(layers), rows, fontsize=8)
    ax.set_xlabel("decoder position")
    fig.colorbar(im, ax=ax, label="top-1 probability", shrink=0.8)
    ax.set_title(title, fontsize=9)
    return fig


def probe_curves(results, labels: Sequence[str] | None = None, title: str = "linear probes"):
    """Held-out score per layer with the shuffled-label control beside it (and chance)."""
    plt = _plt()
    groups = results if isinstance(results, dict) else {"probe": results}
    fig, ax = plt.subplots(figsize=(6, 3.5), constrained_layout=True)
    for index, (name, rs) in enumerate(groups.items()):
        xs = list(range(len(rs)))
        color = f"C{index}"
        ax.plot(xs, [r.test_score for r in rs], "o-", color=color, label=f"{name} (held-out)")
        ax.plot(xs, [r.control_score for r in rs], "x--", color=color, alpha=0.6, label=f"{name} (shuffled control)")
        if rs and rs[0].metric == "accuracy":
            ax.axhline(max(r.chance for r in rs), color="gray", lw=0.8, ls=":")
    ax.set_xticks(range(len(labels or [])), labels or []) if labels else ax.set_xlabel("layer")
    ax.set_ylabel(groups[next(iter(groups))][0].metric if groups else "score")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    return fig


def cka_heatmap(matrix: torch.Tensor, row_labels=None, col_labels=None, title: str = "linear CKA"):
    plt = _plt()
    m = _np(matrix)
    fig, ax = plt.subplots(figsize=(0.5 * m.shape[1] + 2.5, 0.5 * m.shape[0] + 1.5), constrained_layout=True)
    im = ax.imshow(m, cmap="viridis", vmin=0, vmax=1)
    ax.set_yticks(range(m.shape[0]), row_labels or range(m.shape[0]))
    ax.set_xticks(range(m.shape[1]), col_labels or range(m.shape[1]))
    fig.colorbar(im, ax=ax)
    ax.set_title(title, fontsize=9)
    return fig


def selectivity_histogram(selectivity: torch.Tensor, class_names: Sequence[str] | None = None,
                          title: str = "neuron selectivity", xlabel: str = "selectivity"):
    """Distribution of the selectivity index per class ([classes, neurons])."""
    plt = _plt()
    s = _np(selectivity)
    fig, ax = plt.subplots(figsize=(6, 3.2), constrained_layout=True)
    for c in range(s.shape[0]):
        ax.hist(s[c], bins=40, histtype="step", label=(class_names[c] if class_names else f"class {c}"))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("neurons")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    return fig
