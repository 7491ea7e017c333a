"""HookedHubert in Python: HuBERT and wav2vec2 (base models and CTC checkpoints).

The input is a raw 16 kHz waveform. ``model.features(wave)`` normalises it as the checkpoint's
preprocessor_config.json says (zero mean, unit variance per clip) and pads a list of clips into
a batch; ``model(features, lengths)`` runs the normalised batch and returns CTC logits
[batch, frames, vocab] (or the last hidden state [batch, frames, d_model] for a checkpoint
without a CTC head). A list of raw clips passed to ``model(...)`` goes through ``features``
first, with the clips' lengths as the mask.
"""
from __future__ import annotations

from typing import Sequence

import torch

from . import _C
from .model import HookedModel, _as_dtype

Waves = torch.Tensor | Sequence[torch.Tensor]


class HookedHubert(HookedModel):
    """HuBERT / wav2vec2 with a hook point at every activation (``model.hook_names()``).

    Hook names: ``feature_extractor.hook_input``, ``feature_extractor.conv{i}.hook_out``,
    ``feature_projection.hook_out``, ``encoder.hook_pos_conv``, ``encoder.ln_pre`` (post-LN
    checkpoints) or ``encoder.ln_final`` (stable-layer-norm checkpoints) ``.hook_normalized``,
    ``encoder.blocks.{i}.*`` and ``ctc.hook_logits``. HF's ``hidden_states[0]`` is
    ``encoder.blocks.0.hook_resid_pre`` and ``hidden_states[i + 1]`` is
    ``encoder.blocks.{i}.hook_resid_post``.
    """

    default_stack = "encoder"

    def __init__(self, path: str, device=None, dtype=None):
        core = _C.models.HookedHubert(str(path), torch.device(device) if device is not None else None,
                                      _as_dtype(dtype))
        super().__init__(core, str(path))

    def features(self, wave: Waves, return_lengths: bool = False):
        """Normalised model input: [samples] -> [1, samples]; a list of clips -> a right-padded
        [batch, max_samples] batch. With ``return_lengths`` also the clips' sample counts [batch]."""
        clips = _clips(wave)
        values, _ = self._core.prepare(clips)
        if return_lengths:
            return values, torch.tensor([c.numel() for c in clips], dtype=torch.long)
        return values

    def forward(self, features: Waves, lengths: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
        """CTC logits [batch, frames, vocab] (last hidden state without a CTC head).

        ``features``: a normalised waveform [samples] or batch [batch, samples] (from
        ``features()``), or a list of raw clips (normalised and padded here). ``lengths``: real
        samples per item; frames past each item's end are masked out as HF's attention_mask does.
        """
        if isinstance(features, (list, tuple)):
            if lengths is not None:
                raise ValueError("a list of clips carries its own lengths; pass lengths only with a padded batch")
            features, lengths = self.features(features, return_lengths=True)
        features = torch.as_tensor(features)
        if features.dim() == 1:
            features = features.unsqueeze(0)
        if lengths is not None:
            lengths = torch.as_tensor(lengths, dtype=torch.long)
        return self._core.forward(features, None, lengths)

    def encode(self, features: torch.Tensor, lengths=None) -> torch.Tensor:
        """The last hidden state [batch, frames, d_model] (after ln_final in stable checkpoints)."""
        features = torch.as_tensor(features)
        return self._core.encode(features.unsqueeze(0) if features.dim() == 1 else features,
                                 None if lengths is None else torch.as_tensor(lengths, dtype=torch.long))

    def frames(self, lengths) -> torch.Tensor:
        """Encoder frames for clips of ``lengths`` samples (HF's _get_feat_extract_output_lengths)."""
        return self._core.frames_for_samples(torch.as_tensor(lengths, dtype=torch.long).reshape(-1))

    def transcribe(self, wave: Waves, skip_special_tokens: bool = False):
        """Greedy CTC transcription of a raw clip (-> str) or a list of clips (-> list[str])."""
        texts = self._core.transcribe(_clips(wave), skip_special_tokens)
        return texts[0] if isinstance(wave, torch.Tensor) and wave.dim() == 1 else texts

    def ctc_decode(self, frame_ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Text of one CTC id per frame (repeats collapsed, blanks dropped, '|' -> space)."""
        return self._core.ctc_decode([int(i) for i in frame_ids], skip_special_tokens)

    def unembed(self, residual: torch.Tensor) -> torch.Tensor:
        """The CTC head on a residual stream (apply ``apply_final_norm`` first for a lens)."""
        return self._core.ctc_logits(residual)

    def apply_final_norm(self, residual: torch.Tensor, stack: str = "encoder") -> torch.Tensor:
        return self._core.apply_final_norm(residual)


def _clips(wave: Waves) -> list[torch.Tensor]:
    if isinstance(wave, torch.Tensor):
        if wave.dim() == 1:
            return [wave]
        if wave.dim() == 2:
            return list(wave)
        raise ValueError(f"a waveform must be [samples] or [batch, samples], got shape {tuple(wave.shape)}")
    clips = [torch.as_tensor(c) for c in wave]
    if not clips:
        raise ValueError("no clips given")
    return clips
