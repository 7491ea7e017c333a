"""Lenses for every model family (C++ core): what each layer's residual stream would predict if
the model stopped there.

    lens = sl.lens.logit_lens(model, inputs)           # the first stack with a head (decoder / lm / CTC)
    lens.logits            # [rows, batch, positions, vocab]; the last row = the model's logits
    lens.top_tokens(k=3)   # [rows, batch, positions, k] token ids
    enc = sl.lens.encoder_lens(model, mel, max_new_tokens=20)   # decode from each encoder layer
    enc.tokens[layer][item]   # greedy transcript decoded from encoder layer `layer`

A stack with a head of its own (Whisper's decoder, Qwen2-Audio's language model, a HuBERT /
wav2vec2 CTC encoder) is read through its final norm and head; a stack without one (the audio
encoders) by letting layer L stand in for the stack's last layer and running the rest of the
model (the encoder lens; ``decode_from_layers``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import _C
from ._inputs import as_inputs, core


@dataclass
class LogitLensResult:
    logits: torch.Tensor
    hook_names: list[str]
    layers: list[int]
    stack: str

    def log_probs(self) -> torch.Tensor:
        return torch.log_softmax(self.logits.float(), dim=-1)

    def top_tokens(self, k: int = 1) -> torch.Tensor:
        return self.logits.topk(k, dim=-1).indices

    def rank_of(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Rank (0 = top) of ``token_ids`` [batch, tokens] at every row: [rows, batch, tokens]."""
        target = self.logits.gather(-1, token_ids.expand(self.logits.shape[:-1]).unsqueeze(-1))
        return (self.logits > target).sum(-1)


@dataclass
class EncoderLensResult:
    layers: list[int]
    tokens: list[list[list[int]]]
    logits: torch.Tensor | None
    stack: str = "encoder"


def _inputs(model, features, tokens, feature_lengths):
    if tokens is None and feature_lengths is None and not isinstance(features, (tuple, list)):
        return as_inputs(model, features)
    return as_inputs(model, (features, tokens, feature_lengths))


def logit_lens(model, features, tokens=None, feature_lengths=None, stack: str | None = None,
               layers=None, include_input: bool = True) -> LogitLensResult:
    """Each layer's residual stream of ``stack`` read out (default: the first stack with a head:
    Whisper's decoder, Qwen2-Audio's LM, HuBERT's CTC encoder). ``features`` may also be a
    ModelInputs or a dict."""
    r = _C.analysis.logit_lens(core(model), _inputs(model, features, tokens, feature_lengths), stack,
                               list(layers or []), include_input)
    return LogitLensResult(r.logits, list(r.hook_names), list(r.layers), r.stack)


def decode_from_layers(model, inputs, stack: str = "encoder", layers=None, teacher_forced: bool = True,
                       generate: bool = True, prompt=None, max_new_tokens: int = 32,
                       apply_suppress_tokens: bool = True, teacher_tokens=None) -> EncoderLensResult:
    """The model's outputs with layer L of ``stack`` standing in for its last layer: teacher-forced
    logits (of ``teacher_tokens``, else of the inputs' tokens) and greedy transcripts per layer from
    the inputs' prompt (the same greedy decoder and suppress settings as ``generate`` and
    ``transcribe``)."""
    prompt_tensor = None if prompt is None else torch.as_tensor(prompt, dtype=torch.long)
    if teacher_tokens is not None:
        teacher_tokens = torch.as_tensor(teacher_tokens)
        teacher_tokens = teacher_tokens.unsqueeze(0) if teacher_tokens.dim() == 1 else teacher_tokens
    r = _C.analysis.decode_from_layers(core(model), as_inputs(model, inputs), stack, list(layers or []),
                                       teacher_forced, generate, prompt_tensor, max_new_tokens, apply_suppress_tokens,
                                       teacher_tokens)
    return EncoderLensResult(list(r.layers), [list(map(list, t)) for t in r.tokens], r.logits, r.stack)


def encoder_lens(model, features, layers=None, tokens=None, generate: bool = True, prompt=None,
                 max_new_tokens: int = 32, apply_suppress_tokens: bool = True,
                 feature_lengths=None) -> EncoderLensResult:
    """Encoder layer L's output through the encoder's final norm, read by the rest of the model
    (Whisper: the decoder; Qwen2-Audio: projector + LM): greedy transcripts (``generate``) and
    teacher-forced logits on ``tokens`` when given."""
    inputs = _inputs(model, features, None, feature_lengths)
    return decode_from_layers(model, inputs, "encoder", layers, teacher_forced=tokens is not None,
                              generate=generate, prompt=prompt, max_new_tokens=max_new_tokens,
                              apply_suppress_tokens=apply_suppress_tokens, teacher_tokens=tokens)


def encoder_lens_audio(model, features, layer: int, feature_lengths=None) -> torch.Tensor:
    """The encoder's final norm on encoder layer ``layer``'s output: audio states the rest of the
    model can read (Whisper: [batch, frames, d_model] for the decoder)."""
    inputs = _inputs(model, features, None, feature_lengths)
    prefix = model.stack_prefix("encoder")
    n_layers = next(s["n_layers"] for s in model.stacks() if s["prefix"] == prefix)
    if not 0 <= layer < n_layers:
        raise ValueError(f"encoder layer {layer} is out of range; this model has encoder layers 0..{n_layers - 1}")
    residual = model.run(inputs, stop_at=f"{prefix}.blocks.{layer}.hook_resid_post")
    return model.final_norm(residual, "encoder")
