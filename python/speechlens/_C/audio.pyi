"""
Audio files, resampling, feature extractors
"""
from __future__ import annotations
import collections.abc
import os
import torch
import typing
__all__: list[str] = ['WhisperFeatureExtractor', 'load_audio', 'normalize_waveform', 'prepare_waveforms', 'read_audio', 'resample', 'slaney_mel_filter_bank', 'whisper_log_mel', 'write_audio', 'write_wav']
class WhisperFeatureExtractor:
    @staticmethod
    def from_config(preprocessor_config: dict) -> WhisperFeatureExtractor:
        """
        Build from a preprocessor_config.json dict.
        """
    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        """
        [T] -> [n_mels, frames] or [B, T] -> [B, n_mels, frames].
        """
    def __init__(self, feature_size: typing.SupportsInt | typing.SupportsIndex = 80, sampling_rate: typing.SupportsInt | typing.SupportsIndex = 16000, n_fft: typing.SupportsInt | typing.SupportsIndex = 400, hop_length: typing.SupportsInt | typing.SupportsIndex = 160, chunk_length: typing.SupportsInt | typing.SupportsIndex = 30, padding_value: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> None:
        ...
    def batch(self, waves: collections.abc.Sequence[torch.Tensor], padding: str = 'max_length', truncation: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Clips of unequal lengths -> (input_features [B, n_mels, frames], attention_mask int32 [B, frames]).
        """
    def log_mel(self, padded_waves: torch.Tensor) -> torch.Tensor:
        ...
    @property
    def frames(self) -> int:
        ...
    @property
    def mel_filters(self) -> torch.Tensor:
        ...
    @property
    def n_mels(self) -> int:
        ...
    @property
    def n_samples(self) -> int:
        ...
def load_audio(path: os.PathLike | str | bytes, target_rate: typing.SupportsInt | typing.SupportsIndex = 16000) -> torch.Tensor:
    """
    Decode a file to mono float32 [T] resampled to target_rate.
    """
def normalize_waveform(wave: torch.Tensor) -> torch.Tensor:
    """
    Zero mean, unit variance (eps 1e-7) per row of [T] or [B, T].
    """
def prepare_waveforms(waves: collections.abc.Sequence[torch.Tensor], do_normalize: bool = True, return_attention_mask: bool = False, padding_value: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> tuple[torch.Tensor, typing.Any]:
    """
    wav2vec2/HuBERT input: (input_values [B, T_max], attention_mask int32 or None).
    """
def read_audio(path: os.PathLike | str | bytes) -> tuple[torch.Tensor, int]:
    """
    Decode a WAV/FLAC/OGG file to (mono float32 samples [T], sample_rate).
    """
def resample(wave: torch.Tensor, from_rate: typing.SupportsInt | typing.SupportsIndex, to_rate: typing.SupportsInt | typing.SupportsIndex, lowpass_filter_width: typing.SupportsInt | typing.SupportsIndex = 24, rolloff: typing.SupportsFloat | typing.SupportsIndex = 0.945, window: str = 'kaiser', beta: typing.SupportsFloat | typing.SupportsIndex = 12.0) -> torch.Tensor:
    """
    Windowed-sinc polyphase resampling of [T] or [B, T].
    """
def slaney_mel_filter_bank(num_frequency_bins: typing.SupportsInt | typing.SupportsIndex, num_mel_filters: typing.SupportsInt | typing.SupportsIndex, min_frequency: typing.SupportsFloat | typing.SupportsIndex, max_frequency: typing.SupportsFloat | typing.SupportsIndex, sampling_rate: typing.SupportsInt | typing.SupportsIndex) -> torch.Tensor:
    """
    HF mel_filter_bank(norm='slaney', mel_scale='slaney').
    """
def whisper_log_mel(wave: torch.Tensor, n_mels: typing.SupportsInt | typing.SupportsIndex = 80) -> torch.Tensor:
    """
    Whisper log-mel of a 16 kHz [T] or [B, T] waveform, padded/truncated to 30 s.
    """
def write_audio(path: os.PathLike | str | bytes, samples: torch.Tensor, sample_rate: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    Write .wav (float32), .flac (16-bit) or .ogg (Vorbis).
    """
def write_wav(path: os.PathLike | str | bytes, samples: torch.Tensor, sample_rate: typing.SupportsInt | typing.SupportsIndex, encoding: str = 'float32') -> None:
    """
    Write [T] or [C, T] samples as a WAV file.
    """
