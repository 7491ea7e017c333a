"""HookedQwen2Audio in Python: the processor (chat template, log-mel, <|AUDIO|> expansion,
Qwen2 tokenizer), the forward, greedy generation, and the audio / text position split."""
from __future__ import annotations

from typing import Sequence

import torch

from . import _C
from ._inputs import ModelInputs
from .model import HookedModel, batched as _batched


class HookedQwen2Audio(HookedModel):
    """Qwen2-Audio with a hook point at every activation, from the log-mel to the answer.

    ``model(features, input_ids, feature_attention_mask=..., attention_mask=...)`` returns
    language-model logits [batch, seq, vocab]. ``input_ids`` hold the prompt with each
    ``<|AUDIO|>`` expanded to one token per audio frame (``model.prepare`` / the processor does
    it). Hooks: ``audio_encoder.*`` (the Whisper-style audio tower, with ``hook_pooled``),
    ``projector.hook_out``, ``lm.hook_embed``, ``lm.blocks.{i}.*``, ``lm.ln_final.hook_normalized``,
    ``hook_logits``. The cache shorthand ``cache["resid_post", 3]`` reads the language model;
    ``cache["resid_post", 3, "audio_encoder"]`` the audio tower.
    """

    default_stack = "lm"

    def __init__(self, core, path: str | None = None):
        super().__init__(core, path)
        self._processor = None

    # -- processor ----------------------------------------------------------------------------
    @property
    def processor(self):
        """The C++ Qwen2AudioProcessor of the checkpoint folder (tokenizer + preprocessor config)."""
        if self._processor is None:
            self._processor = _C.models.Qwen2AudioProcessor.from_dir(self.path)
        return self._processor

    def prepare(self, waves, prompts=None, system: str = "You are a helpful assistant.", padding_side: str = "left",
                chat: bool = True, sampling_rate: int | None = None):
        """Without ``prompts``: the model's inputs for raw clips (``HookedModel.prepare``: log-mel,
        lengths and the base prompt ``<|audio_bos|><|AUDIO|>...<|audio_eos|>``). With ``prompts``:
        :meth:`process`, HF's processor output for the chat template."""
        if prompts is None:
            return super().prepare(waves, sampling_rate)
        return self.process(waves, prompts, system=system, padding_side=padding_side, chat=chat)

    def process(self, waves, prompts, system: str = "You are a helpful assistant.", padding_side: str = "left",
                chat: bool = True) -> dict:
        """HF ``processor(text=..., audio=...)`` for one clip per prompt: the Instruct chat template
        (unless ``chat=False``, when the prompts are used as written and must hold their own
        ``<|AUDIO|>`` placeholders), log-mel of each clip padded to 30 s, ``<|AUDIO|>`` expanded.
        Returns a dict of input_ids, attention_mask, input_features, feature_attention_mask,
        feature_lengths, audio_token_counts."""
        waves = [waves] if isinstance(waves, torch.Tensor) and waves.dim() == 1 else list(waves)
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if chat:
            if len(waves) != len(prompts):
                raise ValueError(f"one clip per prompt: got {len(waves)} clips and {len(prompts)} prompts")
            texts = [_C.models.Qwen2AudioProcessor.chat_prompt(p, 1, system) for p in prompts]
        else:
            texts = prompts
        waves = [torch.as_tensor(w, dtype=torch.float32) for w in waves]
        return self.processor(texts, waves, padding_side)

    def features(self, wave) -> dict:
        """Log-mel features [clips, n_mels, frames] and HF's feature_attention_mask of clips."""
        batch = self.process(wave, [""] * (1 if isinstance(wave, torch.Tensor) and wave.dim() == 1 else len(wave)))
        return {k: batch[k] for k in ("input_features", "feature_attention_mask", "feature_lengths")}

    # -- running ------------------------------------------------------------------------------
    def make_inputs(self, features: torch.Tensor | None = None, input_ids: torch.Tensor | None = None,
                    feature_attention_mask: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                    feature_lengths: torch.Tensor | None = None) -> ModelInputs:
        """ModelInputs for ``model(features, input_ids, ...)``: ``features`` log-mel
        [clips, n_mels, frames] (None for text only); ``feature_attention_mask`` [clips, frames]
        or ``feature_lengths`` [clips] mark the real frames; ``attention_mask`` [batch, seq] the
        real tokens (left or right padding). Positions count real tokens only, as HF generate
        does, so padding never shifts RoPE."""
        if isinstance(features, ModelInputs):
            return features
        if input_ids is None:
            raise ValueError("Qwen2-Audio's forward needs input_ids (the prompt with <|AUDIO|> expanded; "
                             "model.process(waves, prompts) or model.prepare(waves) make them)")
        input_ids = _batched(input_ids, 2, "input_ids")
        if features is not None:
            features = _batched(features, 3, "features")
            if feature_lengths is None and feature_attention_mask is not None:
                feature_lengths = _batched(feature_attention_mask, 2, "feature_attention_mask").sum(-1)
        if attention_mask is not None:
            attention_mask = _batched(attention_mask, 2, "attention_mask")
        return ModelInputs(features, input_ids, feature_lengths, attention_mask)

    def encode_audio(self, features: torch.Tensor, feature_lengths: torch.Tensor | None = None):
        """(projected audio features [clips, frames / 4, d_model], audio tokens per clip)."""
        return self._core.encode_audio(_batched(features, 3, "features"), feature_lengths)

    def generate_ids(self, features, input_ids, feature_lengths=None, attention_mask=None,
                     max_new_tokens: int = 256, eos_token_ids: Sequence[int] = ()) -> list[list[int]]:
        """Greedy decoding with a KV cache (HF generate(do_sample=False)); hooks fire at every step
        (``hook.decode_step``: 0 is the prompt). New tokens per item, without the end token."""
        inputs = self.make_inputs(features, input_ids, None, attention_mask, feature_lengths)
        return self._core.generate(inputs, None, max_new_tokens, True, None, None,
                                   list(eos_token_ids) if eos_token_ids else None)

    def generate(self, wave, prompt, max_new_tokens: int = 256, system: str = "You are a helpful assistant."):
        """Answer ``prompt`` about ``wave`` (1-D float32 at 16 kHz) with the Instruct chat template;
        returns the text (a list of texts for lists of clips and prompts)."""
        single = isinstance(prompt, str)
        batch = self.process(wave, prompt, system=system)
        ids = self.generate_ids(batch["input_features"], batch["input_ids"], batch["feature_lengths"],
                                batch["attention_mask"], max_new_tokens)
        texts = [self.processor.decode(row, True) for row in ids]
        return texts[0] if single else texts

    # -- modality split -----------------------------------------------------------------------
    def audio_positions(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[batch, seq] bool: the positions that hold audio (the expanded <|AUDIO|> tokens)."""
        return self._core.audio_positions(_batched(input_ids, 2, "input_ids"))

    def text_positions(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[batch, seq] bool: real tokens that are not audio (chat markup and <|audio_bos|> /
        <|audio_eos|> included)."""
        return self._core.text_positions(_batched(input_ids, 2, "input_ids"), attention_mask)

    def unembed(self, residual: torch.Tensor) -> torch.Tensor:
        return self._core.unembed("lm", residual)

    def apply_final_norm(self, residual: torch.Tensor, stack: str = "lm") -> torch.Tensor:
        return self._core.final_norm(stack, residual)

