"""
Hooked model implementations
"""
from __future__ import annotations
import collections.abc
import pathlib
import speechlens._C.hooks
import torch
import typing
__all__: list[str] = ['HookedHubert', 'HookedModel', 'HookedQwen2Audio', 'HookedWhisper', 'ModelInputs', 'Qwen2AudioProcessor', 'families', 'load', 'qwen2_audio_token_count']
class ModelInputs:
    """
    One forward's inputs: features, tokens, feature_lengths, token_mask (each a tensor or None). A value: repeat / select / check_compatible make new ones.
    """
    def __init__(self, features: torch.Tensor | None = None, tokens: torch.Tensor | None = None, feature_lengths: torch.Tensor | None = None, token_mask: torch.Tensor | None = None) -> None:
        ...
    def __repr__(self) -> str:
        ...
    def batch_size(self) -> int:
        ...
    def check_compatible(self, other: ModelInputs, what: str = 'the two inputs') -> None:
        """
        Raises ValueError naming the first field in which `other` cannot stand in for these inputs row for row.
        """
    def repeat(self, times: typing.SupportsInt | typing.SupportsIndex) -> ModelInputs:
        """
        The inputs repeated along the batch (row = copy * batch + item).
        """
    def select(self, rows: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> ModelInputs:
        """
        The given rows of every field.
        """
    def to_dict(self) -> dict:
        ...
    def validate(self) -> None:
        ...
    @property
    def feature_lengths(self) -> typing.Any:
        ...
    @feature_lengths.setter
    def feature_lengths(self, arg1: torch.Tensor | None) -> None:
        ...
    @property
    def features(self) -> typing.Any:
        ...
    @features.setter
    def features(self, arg1: torch.Tensor | None) -> None:
        ...
    @property
    def token_mask(self) -> typing.Any:
        ...
    @token_mask.setter
    def token_mask(self, arg1: torch.Tensor | None) -> None:
        ...
    @property
    def tokens(self) -> typing.Any:
        ...
    @tokens.setter
    def tokens(self, arg1: torch.Tensor | None) -> None:
        ...
class HookedModel:
    """
    The contract every hooked model implements.
    """
    def active_hooks(self) -> list[str]:
        """
        Names of the hook points that currently have a hook attached.
        """
    def add_cache_hook(self, selector: typing.Any, cache: speechlens._C.hooks.ActivationCacheStore, dir: str = 'fwd', permanent: bool = False) -> list[int]:
        """
        Attaches a C++ recorder into `cache` (no Python per activation); returns the hook ids.
        """
    def add_hook(self, selector: typing.Any, fn: typing.Any, dir: str = 'fwd', permanent: bool = False) -> list[int]:
        """
        Attaches a Python hook fn(tensor, hook) at every matching point; returns the hook ids.
        """
    def config_json(self) -> str:
        """
        The configuration as a JSON string (TransformerLens-style keys).
        """
    def final_norm(self, stack: str, residual: torch.Tensor) -> torch.Tensor:
        """
        The stack's final norm without its hooks.
        """
    def final_norm_scale(self, stack: str, residual: torch.Tensor) -> typing.Any:
        """
        What the stack's final norm divides by (its hook_scale), or None.
        """
    def generate(self, inputs: typing.Any, prompt: torch.Tensor | None = None, max_new_tokens: typing.SupportsInt | typing.SupportsIndex = 0, apply_suppress_tokens: bool = True, suppress_tokens: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex] | None = None, begin_suppress_tokens: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex] | None = None, eos_token_ids: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex] | None = None, fwd_hooks: typing.Any = None, start_at: str | None = None, start_value: torch.Tensor | None = None, encoder_output: torch.Tensor | None = None) -> list[list[int]]:
        """
        Greedy decoding with a KV cache; hooks fire at every step. Generated ids per item.
        """
    def hook_names(self) -> list[str]:
        """
        Every hook point name, in forward order.
        """
    def list_hooks(self) -> list:
        """
        [(id, point, 'fwd' | 'bwd', permanent)] of every attached hook.
        """
    def prepare(self, waves: collections.abc.Sequence[torch.Tensor], sampling_rate: typing.SupportsInt | typing.SupportsIndex | None = None) -> ModelInputs:
        """
        Raw clips -> the model's padded inputs with valid lengths (differentiable).
        """
    def remove_hooks(self, ids: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> None:
        ...
    def remove_hooks_where(self, where: typing.Any = None, dir: str = 'both', including_permanent: bool = False) -> int:
        """
        Removes the hooks at the selected points (all when None), of one direction or 'both'; returns the count.
        """
    def reset_hooks(self, including_permanent: bool = False) -> None:
        ...
    def resolve(self, selector: typing.Any) -> list[str]:
        """
        The hook names a selector matches (HookNameError with suggestions if none).
        """
    def run(self, inputs: typing.Any, fwd_hooks: typing.Any = None, bwd_hooks: typing.Any = None, stop_at: str | None = None, start_at: str | None = None, start_value: torch.Tensor | None = None, encoder_output: torch.Tensor | None = None) -> torch.Tensor:
        """
        One forward with hooks for this call only; returns the logits or the stop_at activation.
        """
    def run_with_cache(self, inputs: typing.Any, names: typing.Any, store: speechlens._C.hooks.ActivationCacheStore, grad_names: typing.Any = None, grad_store: speechlens._C.hooks.ActivationCacheStore = None, fwd_hooks: typing.Any = None, bwd_hooks: typing.Any = None, stop_at: str | None = None, start_at: str | None = None, start_value: torch.Tensor | None = None, encoder_output: torch.Tensor | None = None) -> torch.Tensor:
        """
        One forward recording the selected activations (C++ recorders, no Python per activation) into `store` (and gradients into `grad_store` when the caller runs backward).
        """
    def stacks(self) -> list:
        ...
    def to(self, device: torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        ...
    def transcribe(self, waves: collections.abc.Sequence[torch.Tensor], sampling_rate: typing.SupportsInt | typing.SupportsIndex | None = None) -> list[str]:
        """
        Text per clip.
        """
    def unembed(self, stack: str, normed: torch.Tensor) -> torch.Tensor:
        """
        The stack's head (LM / decoder / CTC) on a normed residual stream.
        """
    def unembedding(self, stack: str) -> torch.Tensor:
        ...
    @property
    def checkpoint_dir(self) -> pathlib.Path:
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
    @property
    def sampling_rate(self) -> int:
        ...
class HookedWhisper(HookedModel):
    """
    Whisper with hook points.
    """
    def decode(self, tokens: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """
        Decoder logits for tokens over audio states.
        """
    def default_prompt(self, language: str | None = None, task: str = 'transcribe') -> list[int]:
        """
        <|startoftranscript|> [<|lang|> <|task|>] <|notimestamps|> (no tokenizer needed).
        """
    def detect_language(self, mel: torch.Tensor, mel_lengths: torch.Tensor = None) -> list[int]:
        ...
    def encode(self, mel: torch.Tensor, mel_lengths: torch.Tensor | None = None, stop_at: str | None = None) -> torch.Tensor:
        """
        Audio states [B, T/2, D] after ln_post (or the stop_at activation).
        """
    def transcribe_with(self, waves: collections.abc.Sequence[torch.Tensor], sampling_rate: typing.SupportsInt | typing.SupportsIndex | None = None, language: str | None = None, task: str = 'transcribe', max_new_tokens: typing.SupportsInt | typing.SupportsIndex = 0, ids: bool = False) -> typing.Any:
        """
        Greedy transcription with a language / task (texts, or token ids with ids=True).
        """
    @property
    def begin_suppress_tokens(self) -> list[int]:
        ...
    @property
    def has_tokenizer(self) -> bool:
        ...
    @property
    def suppress_tokens(self) -> list[int]:
        ...
class HookedHubert(HookedModel):
    """
    HuBERT / wav2vec2 (base, CTC) with hook points.
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
    def set_max_input_seconds(self, seconds: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    def transcribe_clips(self, waves: collections.abc.Sequence[torch.Tensor], skip_special_tokens: bool = False) -> list[str]:
        """
        Greedy CTC transcription of raw 16 kHz clips.
        """
    @property
    def can_transcribe(self) -> bool:
        ...
class HookedQwen2Audio(HookedModel):
    """
    Qwen2-Audio with hook points.
    """
    @staticmethod
    def positions_from_mask(token_mask: torch.Tensor) -> torch.Tensor:
        ...
    def audio_positions(self, input_ids: torch.Tensor) -> torch.Tensor:
        ...
    def encode_audio(self, mel: torch.Tensor, mel_lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """
        (projected audio features [clips, frames/4, d_model], audio tokens per clip [clips]).
        """
    def processor(self) -> ...:
        ...
    def text_positions(self, input_ids: torch.Tensor, token_mask: torch.Tensor | None = None) -> torch.Tensor:
        ...
    @property
    def has_processor(self) -> bool:
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
def families() -> list[str]:
    """
    The config.json model_types that load.
    """
def load(path: str, device: torch.device | None = None, dtype: torch.dtype | None = None) -> HookedModel:
    """
    Loads an HF checkpoint folder with the family its config.json names.
    """
def qwen2_audio_token_count(mel_frames: typing.SupportsInt | typing.SupportsIndex) -> int:
    """
    Audio tokens Qwen2-Audio gives a clip of `mel_frames` valid log-mel frames.
    """
