"""HookedWhisper in Python: the log-mel front end, the forward, greedy transcription."""
from __future__ import annotations

import torch

from . import _C
from ._inputs import ModelInputs, as_waves
from .model import HookedModel, batched as _batched


class HookedWhisper(HookedModel):
    """Whisper with a hook point at every activation (``model.hook_names()`` lists them).

    ``model(features, tokens)`` returns decoder logits [batch, tokens, vocab]; without
    ``tokens`` the decoder reads the default prompt (start-of-transcript, no timestamps).
    A tokenizer is needed only to turn ids into text: features, forwards and ``generate`` run on
    a checkpoint folder without tokenizer files.
    """

    default_stack = "encoder"

    def __init__(self, core, path: str | None = None):
        super().__init__(core, path)
        self._tokenizer = None

    @property
    def tokenizer(self) -> "_C.text.WhisperTokenizer":
        """The checkpoint's tokenizer (``model.tokenizer.decode(ids)``), read on first use."""
        if self._tokenizer is None:
            self._tokenizer = _C.text.WhisperTokenizer.from_dir(self.path)
        return self._tokenizer

    def features(self, wave, sampling_rate: int | None = None, return_lengths: bool = False):
        """Log-mel [n_mels, 3000] of one clip ([B, n_mels, 3000] for a batch or list), padded to
        30 s as the model was trained; with ``return_lengths`` also the mel frames holding audio.
        ``wave``: a path, a tensor or array (integer PCM is scaled), or a list of clips."""
        clips, rate, single = as_waves(wave, sampling_rate, self.sampling_rate)
        inputs = self._core.prepare(clips, rate)
        mel, lengths = inputs.features, inputs.feature_lengths
        if single:
            mel = mel[0]
        return (mel, lengths) if return_lengths else mel

    def make_inputs(self, features=None, tokens=None, feature_lengths=None) -> ModelInputs:
        """ModelInputs of log-mel ``features`` [batch, n_mels, frames] (or [n_mels, frames]) and
        decoder ``tokens`` [batch, seq] (or [seq]; None: the default prompt)."""
        if isinstance(features, ModelInputs):
            return features
        if features is None:
            raise ValueError("Whisper's forward needs log-mel features: model(model.features(wave), tokens)")
        features = _batched(features, 3, "features")
        if tokens is not None:
            tokens = _batched(tokens, 2, "tokens")
        if feature_lengths is not None:
            feature_lengths = torch.as_tensor(feature_lengths, dtype=torch.long).reshape(-1)
        return ModelInputs(features, tokens, feature_lengths)

    def transcribe(self, wave, language: str | None = None, task: str = "transcribe", max_new_tokens: int = 0,
                   sampling_rate: int | None = None) -> str | list[str]:
        """Greedy transcription of a clip (a str) or of each clip of a batch / list (a list), at most
        30 s each; hooks attached to the model fire at every decoding step."""
        clips, rate, single = as_waves(wave, sampling_rate, self.sampling_rate)
        texts = self._core.transcribe_with(clips, rate, language, task, max_new_tokens)
        return texts[0] if single else list(texts)

    def generate_from_wave(self, wave, language: str | None = None, task: str = "transcribe",
                           max_new_tokens: int = 0, sampling_rate: int | None = None) -> list[list[int]]:
        """The token ids ``transcribe`` decodes (prompt and end-of-text excluded), per clip."""
        clips, rate, _ = as_waves(wave, sampling_rate, self.sampling_rate)
        return self._core.transcribe_with(clips, rate, language, task, max_new_tokens, True)

    def prompt(self, language: str | None = None, task: str = "transcribe") -> list[int]:
        """The decoder prompt transcription starts from: <|startoftranscript|> [<|lang|> <|task|>]
        <|notimestamps|> (from the tokenizer, or generation_config.json without one)."""
        return list(self._core.default_prompt(language, task))

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
        """Greedy decoding with a KV cache; hooks fire at every step (``hook.decode_step``). The
        suppress-token settings come from generation_config.json (config.json as the fallback),
        the same as ``transcribe`` and the encoder lens use."""
        inputs = self.make_inputs(features, None, feature_lengths)
        prompt_tensor = None if prompt is None else torch.as_tensor(prompt, dtype=torch.long)
        return self._core.generate(inputs, prompt_tensor, max_new_tokens, apply_suppress_tokens)

    def unembed(self, residual: torch.Tensor) -> torch.Tensor:
        """The decoder's unembedding on a (normed) decoder residual stream."""
        return self._core.unembed("decoder", residual)

    def apply_final_norm(self, residual: torch.Tensor, stack: str = "decoder") -> torch.Tensor:
        return self._core.final_norm(stack, residual)
