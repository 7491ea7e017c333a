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

from ._inputs import ModelInputs, as_waves
from .model import HookedModel


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

    def features(self, wave, return_lengths: bool = False, sampling_rate: int | None = None):
        """Normalised model input: a clip -> [1, samples]; a batch or list of clips -> a
        right-padded [batch, max_samples] batch. With ``return_lengths`` also the clips' sample
        counts [batch]."""
        clips, rate, _ = as_waves(wave, sampling_rate, self.sampling_rate)
        inputs = self._core.prepare(clips, rate)
        return (inputs.features, inputs.feature_lengths) if return_lengths else inputs.features

    def make_inputs(self, features=None, lengths=None) -> ModelInputs:
        """ModelInputs of a normalised waveform [samples] or batch [batch, samples] (from
        ``features()``) with real ``lengths`` per item, or of a list of raw clips (normalised and
        padded here, their lengths the mask)."""
        if isinstance(features, ModelInputs):
            return features
        if features is None:
            raise ValueError("HuBERT's forward needs a waveform: model(model.features(wave))")
        if isinstance(features, (list, tuple)):
            if lengths is not None:
                raise ValueError("a list of clips carries its own lengths; pass lengths only with a padded batch")
            return self.prepare(list(features), self.sampling_rate)
        features = torch.as_tensor(features)
        if features.dim() == 1:
            features = features.unsqueeze(0)
        if lengths is not None:
            lengths = torch.as_tensor(lengths, dtype=torch.long).reshape(-1)
        return ModelInputs(features, None, lengths)

    def encode(self, features: torch.Tensor, lengths=None) -> torch.Tensor:
        """The last hidden state [batch, frames, d_model] (after ln_final in stable checkpoints)."""
        features = torch.as_tensor(features)
        return self._core.encode(features.unsqueeze(0) if features.dim() == 1 else features,
                                 None if lengths is None else torch.as_tensor(lengths, dtype=torch.long))

    def frames(self, lengths) -> torch.Tensor:
        """Encoder frames for clips of ``lengths`` samples (HF's _get_feat_extract_output_lengths)."""
        return self._core.frames_for_samples(torch.as_tensor(lengths, dtype=torch.long).reshape(-1))

    def transcribe(self, wave, skip_special_tokens: bool = False, sampling_rate: int | None = None):
        """Greedy CTC transcription of a clip (-> str) or a batch / list of clips (-> list[str])."""
        clips, rate, single = as_waves(wave, sampling_rate, self.sampling_rate)
        if rate != self.sampling_rate:
            clips = [_C_resample(c, rate, self.sampling_rate) for c in clips]
        texts = self._core.transcribe_clips(clips, skip_special_tokens)
        return texts[0] if single else list(texts)

    def ctc_decode(self, frame_ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Text of one CTC id per frame (repeats collapsed, blanks dropped, '|' -> space)."""
        return self._core.ctc_decode([int(i) for i in frame_ids], skip_special_tokens)

    def unembed(self, residual: torch.Tensor) -> torch.Tensor:
        """The CTC head on a residual stream (apply ``apply_final_norm`` first for a lens)."""
        return self._core.unembed("encoder", residual)

    def apply_final_norm(self, residual: torch.Tensor, stack: str = "encoder") -> torch.Tensor:
        return self._core.final_norm(stack, residual)


def _C_resample(wave: torch.Tensor, from_rate: int, to_rate: int) -> torch.Tensor:
    from . import _C

    return _C.audio.resample(wave, from_rate, to_rate)
