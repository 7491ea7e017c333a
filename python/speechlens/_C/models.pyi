"""
Hooked model implementations
"""
from __future__ import annotations
import collections.abc
import os
import speechlens._C.hooks
import torch
import typing
__all__: list[str] = ['HookedHubert', 'HookedModel', 'HookedQwen2Audio', 'HookedWhisper', 'Qwen2AudioProcessor', 'WhisperPipeline', 'qwen2_audio_token_count']
class HookedModel:
    """
    Base of every hooked model.
    """
    def active_hooks(self) -> list[str]:
        """
        Names of the hook points that currently have a hook attached.
        """
    def add_cache_hook(self, selector: typing.Any, cache: speechlens._C.hooks.ActivationCacheStore, dir: str = 'fwd') -> list[int]:
        ...
    def add_hook(self, selector: typing.Any, fn: collections.abc.Callable, dir: str = 'fwd', permanent: bool = False) -> list[int]:
        """
        Attaches a Python hook fn(tensor, hook) at every matching point; returns the hook ids.
        """
    def config_json(self) -> str:
        """
        The configuration as a JSON string (TransformerLens-style keys).
        """
    def forward(self, features: torch.Tensor, tokens: torch.Tensor | None = None, feature_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """
        Logits of one full forward.
        """
    def hook_names(self) -> list[str]:
        """
        Every hook point name, in forward order.
        """
    def remove_hooks(self, arg0: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> None:
        ...
    def reset_hooks(self, including_permanent: bool = False) -> None:
        ...
    def resolve(self, selector: typing.Any) -> list[str]:
        """
        The hook names a selector matches (error with suggestions if none).
        """
    def to(self, device: torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        ...
    @property
    def device(self) -> torch.device:
        ...
    @property
    def dtype(self) -> torch.dtype:
        ...
    @property
    def family(self) -> str:
        ...
    @property
    def hook_count(self) -> int:
        ...
class HookedWhisper(HookedModel):
    """
    Whisper with hook points.
    """
    def __init__(self, path: str, device: torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        ...
    def apply_final_norm(self, residual: torch.Tensor, stack: str = 'decoder') -> torch.Tensor:
        """
        The stack's final layer norm without its hook (for lenses and decompositions).
        """
    def decode(self, tokens: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        ...
    def encode(self, mel: torch.Tensor, mel_lengths: torch.Tensor | None = None) -> torch.Tensor:
        ...
    def generate_greedy(self, mel: torch.Tensor, prompt: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex] = [], max_new_tokens: typing.SupportsInt | typing.SupportsIndex = 0, apply_suppress_tokens: bool = True, mel_lengths: torch.Tensor | None = None) -> list[list[int]]:
        ...
    def unembed(self, residual: torch.Tensor) -> torch.Tensor:
        ...
class HookedHubert(HookedModel):
    """
    HuBERT / wav2vec2 (base, CTC) with hook points.
    """
    def __init__(self, path: str, device: torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        ...
    def apply_final_norm(self, residual: torch.Tensor) -> torch.Tensor:
        """
        The stable variant's final norm without its hook (identity for post-LN).
        """
    def ctc_decode(self, frame_ids: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], skip_special_tokens: bool = False) -> str:
        """
        Text of one CTC id per frame (collapse repeats, drop blanks, '|' -> space).
        """
    def ctc_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        ...
    def encode(self, wave: torch.Tensor, sample_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """
        Last hidden state [B, T, D].
        """
    def frames_for_samples(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        """
        Encoder frames per clip length (HF's _get_feat_extract_output_lengths).
        """
    def prepare(self, waves: collections.abc.Sequence[torch.Tensor]) -> tuple[torch.Tensor, typing.Any]:
        """
        Raw clips -> (normalised right-padded batch [B, T], attention mask or None) as the checkpoint's preprocessor_config.json says.
        """
    def transcribe(self, waves: collections.abc.Sequence[torch.Tensor], skip_special_tokens: bool = False) -> list[str]:
        """
        Greedy CTC transcription of raw clips.
        """
class HookedQwen2Audio(HookedModel):
    """
    Qwen2-Audio with hook points.
    """
    @staticmethod
    def positions_from_mask(token_mask: torch.Tensor) -> torch.Tensor:
        ...
    def __init__(self, path: str, device: torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        ...
    def apply_final_norm(self, residual: torch.Tensor, stack: str = 'lm') -> torch.Tensor:
        """
        The stack's final norm without its hook (for lenses and decompositions).
        """
    def audio_positions(self, input_ids: torch.Tensor) -> torch.Tensor:
        ...
    def encode_audio(self, mel: torch.Tensor, mel_lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """
        (projected audio features [clips, frames/4, d_model], audio tokens per clip [clips]).
        """
    def forward_full(self, features: torch.Tensor | None, input_ids: torch.Tensor, feature_lengths: torch.Tensor | None = None, token_mask: torch.Tensor | None = None) -> torch.Tensor:
        ...
    def generate_greedy(self, mel: torch.Tensor | None, mel_lengths: torch.Tensor | None, input_ids: torch.Tensor, token_mask: torch.Tensor | None = None, max_new_tokens: typing.SupportsInt | typing.SupportsIndex = 256, eos_token_ids: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex] = []) -> list[list[int]]:
        ...
    def text_positions(self, input_ids: torch.Tensor, token_mask: torch.Tensor | None = None) -> torch.Tensor:
        ...
    def unembed(self, residual: torch.Tensor) -> torch.Tensor:
        ...
class Qwen2AudioProcessor:
    """
    Chat template, log-mel, <|AUDIO|> expansion and Qwen2 tokenizer.
    """
    @staticmethod
    def chat_prompt(prompt: str, audio_count: typing.SupportsInt | typing.SupportsIndex = 1, system: str = 'You are a helpful assistant.') -> str:
        ...
    @staticmethod
    def expand_audio_tokens(text: str, counts: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> str:
        ...
    @staticmethod
    def from_dir(dir: str) -> Qwen2AudioProcessor:
        ...
    def __call__(self, texts: collections.abc.Sequence[str], clips: collections.abc.Sequence[torch.Tensor] = [], padding_side: str = 'left') -> dict:
        """
        HF processor(text=texts, audio=clips): a dict of input_ids, attention_mask, input_features, feature_attention_mask, feature_lengths, audio_token_counts.
        """
    def decode(self, ids: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], skip_special_tokens: bool = True) -> str:
        ...
    def encode(self, text: str) -> list[int]:
        ...
    @property
    def audio_token_id(self) -> int:
        ...
    @property
    def n_samples(self) -> int:
        ...
    @property
    def pad_token_id(self) -> int:
        ...
    @property
    def sampling_rate(self) -> int:
        ...
class WhisperPipeline:
    """
    Feature extractor, tokenizer and generation settings around a HookedWhisper.
    """
    def __init__(self, model: HookedWhisper, dir: os.PathLike | str | bytes) -> None:
        ...
    def features(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        (log-mel [B, n_mels, frames], real frames [B]) of a [T] or [B, T] wave.
        """
    def generate(self, wave: torch.Tensor, language: str | None = None, task: str = 'transcribe', max_new_tokens: typing.SupportsInt | typing.SupportsIndex = 0) -> list[list[int]]:
        ...
    def prompt(self, mel: torch.Tensor, language: str | None = None, task: str = 'transcribe') -> list[int]:
        ...
    def transcribe(self, wave: torch.Tensor, language: str | None = None, task: str = 'transcribe', max_new_tokens: typing.SupportsInt | typing.SupportsIndex = 0) -> list[str]:
        ...
    @property
    def begin_suppress_tokens(self) -> list[int]:
        ...
    @property
    def suppress_tokens(self) -> list[int]:
        ...
def qwen2_audio_token_count(mel_frames: typing.SupportsInt | typing.SupportsIndex) -> int:
    """
    Audio tokens Qwen2-Audio gives a clip of `mel_frames` valid log-mel frames.
    """
