"""HookedWhisper in Python: the log-mel front end, the forward, greedy transcription."""
from __future__ import annotations

import torch

from . import _C
from .model import HookedModel, batched as _batched


class HookedWhisper(HookedModel):
    """Whisper with a hook point at every activation (``model.hook_names()`` lists them).

    ``model(features, tokens)`` returns decoder logits [batch, tokens, vocab]; without
    ``tokens`` the decoder reads the start-of-transcript prompt.
    """

    default_stack = "encoder"

    def __init__(self, path: str, device=None, dtype=None):
        from .model import _as_dtype

        core = _C.models.HookedWhisper(str(path), torch.device(device) if device is not None else None,
                                       _as_dtype(dtype))
        super().__init__(core, str(path))
        self._pipeline = None
        self._tokenizer = None

    @property
    def pipeline(self) -> "_C.models.WhisperPipeline":
        """The checkpoint's feature extractor, tokenizer and generation settings around this
        model (read from the checkpoint folder on first use)."""
        if self._pipeline is None:
            self._pipeline = _C.models.WhisperPipeline(self._core, self.path)
        return self._pipeline

    @property
    def tokenizer(self) -> "_C.text.WhisperTokenizer":
        """The checkpoint's tokenizer (``model.tokenizer.decode(ids)``)."""
        if self._tokenizer is None:
            self._tokenizer = _C.text.WhisperTokenizer.from_dir(self.path)
        return self._tokenizer

    def features(self, wave: torch.Tensor, return_lengths: bool = False):
        """Log-mel [n_mels, 3000] of a 16 kHz wave [T] ([B, n_mels, 3000] for [B, T]), padded to
        30 s as the model was trained; with ``return_lengths`` also the frames holding audio."""
        wave = _wave(wave)
        mel, lengths = self.pipeline.features(wave)
        if wave.dim() == 1:
            mel = mel[0]
        return (mel, lengths) if return_lengths else mel

    def transcribe(self, wave: torch.Tensor, language: str | None = None, task: str = "transcribe",
                   max_new_tokens: int = 0) -> str | list[str]:
        """Greedy transcription of a 16 kHz wave [T] (a str) or a batch [B, T] (a list), at most
        30 s each; hooks attached to the model fire at every decoding step."""
        wave = _wave(wave)
        texts = self.pipeline.transcribe(wave, language, task, max_new_tokens)
        return texts[0] if wave.dim() == 1 else texts

    def generate_from_wave(self, wave: torch.Tensor, language: str | None = None, task: str = "transcribe",
                           max_new_tokens: int = 0) -> list[list[int]]:
        """The token ids ``transcribe`` decodes (prompt and end-of-text excluded), per clip."""
        return self.pipeline.generate(_wave(wave), language, task, max_new_tokens)

    def forward(self, features: torch.Tensor, tokens: torch.Tensor | None = None,
                feature_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [batch, tokens, vocab] for log-mel ``features`` [batch, n_mels, frames]
        (or [n_mels, frames]) and decoder ``tokens`` [batch, seq] (or [seq])."""
        features = _batched(features, 3, "features")
        if tokens is None:
            tokens = torch.tensor([self.prompt()] * features.shape[0])
        tokens = _batched(tokens, 2, "tokens")
        return self._core.forward(features, tokens, feature_lengths)

    def prompt(self) -> list[int]:
        """The decoder prompt transcription starts from: the tokenizer's start-of-transcript
        sequence (English, no timestamps) when the checkpoint has a tokenizer, else the
        config's decoder start token."""
        try:
            return list(self.tokenizer.sot_sequence())
        except Exception:  # no tokenizer files in the folder (e.g. a bare test checkpoint)
            return [self.cfg.decoder_start_token_id]

    def to_tokens(self, text: str | list[str], prepend_prompt: bool = True) -> torch.Tensor:
        """Token ids [batch, seq] of ``text`` (TransformerLens's ``to_tokens``), after the
        decoding prompt unless ``prepend_prompt=False``. A list of texts must tokenize to the
        same length (Whisper has no padding token in its decoder)."""
        texts = [text] if isinstance(text, str) else list(text)
        prefix = self.prompt() if prepend_prompt else []
        rows = [prefix + list(self.tokenizer.encode(t)) for t in texts]
        if len({len(r) for r in rows}) != 1:
            raise ValueError(f"texts tokenize to different lengths {[len(r) for r in rows]}; pass them one by one")
        return torch.tensor(rows, dtype=torch.long)

    def to_string(self, tokens) -> str | list[str]:
        """Text of token ids ([seq] -> str, [batch, seq] -> list), special tokens kept."""
        ids = torch.as_tensor(tokens)
        if ids.dim() == 2:
            return [self.to_string(row) for row in ids]
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)

    def to_str_tokens(self, tokens) -> list[str]:
        """One string per token of ``tokens`` (ids, or a text tokenized with the prompt)."""
        ids = self.to_tokens(tokens)[0] if isinstance(tokens, str) else torch.as_tensor(tokens).flatten()
        return [self.tokenizer.decode([int(i)], skip_special_tokens=False) for i in ids]

    def encode(self, features: torch.Tensor, feature_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Audio states [batch, frames / 2, d_model] after the encoder's final norm."""
        return self._core.encode(_batched(features, 3, "features"), feature_lengths)

    def decode(self, tokens: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return self._core.decode(_batched(tokens, 2, "tokens"), audio)

    def generate(self, features: torch.Tensor, prompt: list[int] | None = None, max_new_tokens: int = 0,
                 apply_suppress_tokens: bool = True, feature_lengths=None) -> list[list[int]]:
        """Greedy decoding with a KV cache; hooks fire at every step (``hook.decode_step``)."""
        return self._core.generate_greedy(_batched(features, 3, "features"), prompt or self.prompt(),
                                          max_new_tokens, apply_suppress_tokens, feature_lengths)

    def unembed(self, residual: torch.Tensor) -> torch.Tensor:
        return self._core.unembed(residual)

    def apply_final_norm(self, residual: torch.Tensor, stack: str = "decoder") -> torch.Tensor:
        return self._core.apply_final_norm(residual, stack)


def _wave(wave) -> torch.Tensor:
    if not isinstance(wave, torch.Tensor):
        wave = torch.as_tensor(wave)
    return wave.to(torch.float32)

