"""Shared fixtures for the analysis tests: a tiny random Whisper saved by transformers, loaded by
SpeechLens and by HF, and a plain HF forward-hook patching loop as the reference."""
from __future__ import annotations

import pathlib

import torch


def tiny_whisper_config(**overrides):
    from transformers import WhisperConfig

    kwargs = dict(vocab_size=96, num_mel_bins=8, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                  decoder_attention_heads=2, d_model=16, encoder_ffn_dim=32, decoder_ffn_dim=32,
                  max_source_positions=8, max_target_positions=12, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                  decoder_start_token_id=1, suppress_tokens=[], begin_suppress_tokens=[])
    kwargs.update(overrides)
    # HF's default init (std 0.02) leaves a tiny random model nearly deaf to its audio; a
    # 1/sqrt(d_model) init makes patching effects large enough to compare meaningfully.
    kwargs.setdefault("init_std", kwargs["d_model"] ** -0.5)
    return WhisperConfig(**kwargs)


def save_tiny_whisper(folder: pathlib.Path, seed: int = 0, **overrides):
    from transformers import WhisperForConditionalGeneration

    torch.manual_seed(seed)
    hf = WhisperForConditionalGeneration(tiny_whisper_config(**overrides)).eval()
    hf.save_pretrained(folder)
    return hf


def hf_module(hf, hook_name: str):
    """(module, kind) for a SpeechLens hook name: kind 'pre' reads the module's first input,
    'out' its output, 'z' the input of the attention's out_proj (heads concatenated)."""
    parts = hook_name.split(".")
    stack = hf.model.encoder if parts[0] == "encoder" else hf.model.decoder
    if parts[1] == "blocks":
        layer = stack.layers[int(parts[2])]
        rest = ".".join(parts[3:])
        if rest == "hook_resid_pre":
            return layer, "pre"
        if rest == "hook_resid_post":
            return layer, "out"
        if rest == "attn.hook_z":
            return layer.self_attn.out_proj, "z"
    if hook_name == "decoder.ln_final.hook_normalized":
        return hf.model.decoder.layer_norm, "out"
    if hook_name == "encoder.ln_post.hook_normalized":
        return hf.model.encoder.layer_norm, "out"
    raise KeyError(hook_name)


def _attach(module, kind, fn):
    """fn(activation) -> replacement or None, on the module's input (pre / z) or output."""
    if kind in ("pre", "z"):
        def pre(mod, args, kwargs):
            if args:
                new = fn(args[0])
                return None if new is None else ((new,) + tuple(args[1:]), kwargs)
            new = fn(kwargs["hidden_states"])
            if new is None:
                return None
            kwargs = dict(kwargs)
            kwargs["hidden_states"] = new
            return args, kwargs
        return module.register_forward_pre_hook(pre, with_kwargs=True)

    def post(mod, args, output):
        tensor = output[0] if isinstance(output, tuple) else output
        new = fn(tensor)
        if new is None:
            return None
        return (new,) + tuple(output[1:]) if isinstance(output, tuple) else new
    return module.register_forward_hook(post)


def hf_logits(hf, features, tokens):
    with torch.no_grad():
        return hf(input_features=features, decoder_input_ids=tokens).logits


def hf_patching_loop(hf, clean, corrupted, hook_names, metric, sweep="position", window=1, n_heads=None,
                     limit=None):
    """The reference: cache the clean activations with forward hooks, then one HF forward per
    configuration with a hook that writes the clean slice. Returns [hooks, slots] (or [hooks]);
    with ``limit`` only the first ``limit`` configurations run (the rest stay NaN)."""
    done = 0
    cache = {}
    handles = []
    for name in hook_names:
        module, kind = hf_module(hf, name)
        handles.append(_attach(module, kind, lambda t, name=name: cache.__setitem__(name, t.detach().clone())))
    hf_logits(hf, *clean)
    for h in handles:
        h.remove()
    rows = []
    for name in hook_names:
        module, kind = hf_module(hf, name)
        source = cache[name]
        if sweep == "whole":
            slots = [None]
        elif sweep == "head":
            d_head = source.shape[-1] // n_heads
            slots = [(h * d_head, (h + 1) * d_head) for h in range(n_heads)]
        else:
            slots = [(b, min(source.shape[1], b + window)) for b in range(0, source.shape[1], window)]
        row = []
        for slot in slots:
            if limit is not None and done >= limit:
                row.append(float("nan"))
                continue
            done += 1

            def patch(t, slot=slot):
                out = t.clone()
                if slot is None:
                    out[:] = source
                elif sweep == "head":
                    out[..., slot[0]:slot[1]] = source[..., slot[0]:slot[1]]
                else:
                    out[:, slot[0]:slot[1]] = source[:, slot[0]:slot[1]]
                return out
            handle = _attach(module, kind, patch)
            try:
                row.append(metric(hf_logits(hf, *corrupted)).mean().item())
            finally:
                handle.remove()
        rows.append(row)
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), float("nan"), dtype=torch.float64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = torch.tensor(r, dtype=torch.float64)
    return out[:, 0] if sweep == "whole" else out
