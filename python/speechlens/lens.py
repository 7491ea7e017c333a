"""Logit lens on Whisper's decoder and an encoder lens (C++ core).

    lens = sl.lens.logit_lens(model, mel, tokens)
    lens.logits            # [decoder layers + 1, batch, tokens, vocab]; last row = model logits
    lens.top_tokens(k=3)   # [layers + 1, batch, tokens, k] token ids
    enc = sl.lens.encoder_lens(model, mel, max_new_tokens=20)
    enc.tokens[layer][item]   # greedy transcript decoded from encoder layer `layer`
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

    def log_probs(self) -> torch.Tensor:
        return torch.log_softmax(self.logits.float(), dim=-1)

    def top_tokens(self, k: int = 1) -> torch.Tensor:
        return self.logits.topk(k, dim=-1).indices

    def rank_of(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Rank (0 = top) of ``token_ids`` [batch, tokens] at every layer: [layers + 1, batch, tokens]."""
        target = self.logits.gather(-1, token_ids.expand(self.logits.shape[:-1]).unsqueeze(-1))
        return (self.logits > target).sum(-1)


@dataclass
class EncoderLensResult:
    layers: list[int]
    tokens: list[list[list[int]]]
    logits: torch.Tensor | None


def _whisper(model):
    c = core(model)
    if c.family != "whisper":
        raise TypeError(f"this lens reads Whisper's decoder; the model is {c.family}")
    return c


def logit_lens(model, features, tokens=None, feature_lengths=None) -> LogitLensResult:
    """Each decoder layer's residual stream through the final norm and the unembedding."""
    c = _whisper(model)
    r = _C.analysis.logit_lens(c, as_inputs(model, (features, tokens, feature_lengths)))
    return LogitLensResult(r.logits, list(r.hook_names))


def encoder_lens(model, features, layers=None, tokens=None, generate: bool = True, prompt=None,
                 max_new_tokens: int = 32, apply_suppress_tokens: bool = True,
                 feature_lengths=None) -> EncoderLensResult:
    """Encoder layer L's output through ln_post, decoded by the full decoder: greedy transcripts
    (``generate``) and teacher-forced logits on ``tokens`` when given."""
    c = _whisper(model)
    features = torch.as_tensor(features)
    if features.dim() == 2:
        features = features.unsqueeze(0)
    if tokens is not None:
        tokens = torch.as_tensor(tokens)
        tokens = tokens.unsqueeze(0) if tokens.dim() == 1 else tokens
    r = _C.analysis.encoder_lens(c, features, list(layers or []), tokens, generate,
                                 list(prompt or model.prompt()), max_new_tokens, apply_suppress_tokens,
                                 feature_lengths)
    return EncoderLensResult(list(r.layers), [list(map(list, t)) for t in r.tokens], r.logits)


def encoder_lens_audio(model, features, layer: int, feature_lengths=None) -> torch.Tensor:
    """ln_post(encoder layer ``layer``'s output): audio states the decoder can read."""
    features = torch.as_tensor(features)
    return _C.analysis.encoder_lens_audio(_whisper(model), features.unsqueeze(0) if features.dim() == 2 else features,
                                          layer, feature_lengths)
