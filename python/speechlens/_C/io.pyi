"""
Checkpoint I/O
"""
from __future__ import annotations
import collections.abc
import os
import pathlib
import torch
import typing
__all__: list[str] = ['CTranslate2Model', 'SafetensorsFile', 'convert_ctranslate2_whisper', 'load_safetensors', 'save_safetensors', 'whisper_hf_state_dict']
class SafetensorsFile:
    """
    A validated, memory-mapped safetensors file. get() returns zero-copy, copy-on-write views of the mapping.
    """
    @staticmethod
    def open(path: os.PathLike | str | bytes) -> SafetensorsFile:
        ...
    def __contains__(self, name: str) -> bool:
        ...
    def __getitem__(self, name: str) -> torch.Tensor:
        ...
    def __init__(self, path: os.PathLike | str | bytes) -> None:
        ...
    def __len__(self) -> int:
        ...
    def __repr__(self) -> str:
        ...
    def contains(self, name: str) -> bool:
        ...
    def data_range(self) -> tuple[int, int]:
        """
        (address, size) of the mapped data buffer: a tensor whose data_ptr() lies inside is a view, not a copy.
        """
    def dtype(self, name: str) -> torch.dtype:
        ...
    def get(self, name: str) -> torch.Tensor:
        ...
    def keys(self) -> list[str]:
        """
        Tensor names, sorted.
        """
    def metadata(self) -> dict[str, str]:
        ...
    def names(self) -> list[str]:
        """
        Tensor names, sorted.
        """
    def shape(self, name: str) -> list[int]:
        ...
    def to_dict(self) -> dict:
        """
        Every tensor by name.
        """
    @property
    def path(self) -> pathlib.Path:
        ...
class CTranslate2Model:
    """
    A CTranslate2 model.bin, read whole into memory.
    """
    def __contains__(self, name: str) -> bool:
        ...
    def __init__(self, path: os.PathLike | str | bytes) -> None:
        """
        Read a model.bin, or the folder holding one.
        """
    def get(self, name: str) -> torch.Tensor:
        """
        The tensor as stored (aliases resolved).
        """
    def get_float(self, name: str) -> torch.Tensor:
        """
        float32, dequantizing int8/int16 weights by their _scale.
        """
    def names(self) -> list[str]:
        """
        Stored variable names, sorted (aliases excluded).
        """
    @property
    def aliases(self) -> dict[str, str]:
        ...
    @property
    def binary_version(self) -> int:
        ...
    @property
    def spec_name(self) -> str:
        ...
    @property
    def spec_revision(self) -> int:
        ...
def convert_ctranslate2_whisper(ct2_dir: os.PathLike | str | bytes, out_dir: os.PathLike | str | bytes) -> None:
    """
    Convert a CTranslate2 Whisper folder into an HF checkpoint folder (float32 safetensors).
    """
def load_safetensors(path: os.PathLike | str | bytes) -> dict:
    """
    All tensors of a safetensors file as {name: tensor}; the tensors view the mapped file.
    """
def save_safetensors(path: os.PathLike | str | bytes, tensors: collections.abc.Mapping[str, torch.Tensor], metadata: collections.abc.Mapping[str, str] | None = None) -> None:
    """
    Writes {name: tensor} in the safetensors format, as safetensors.torch.save_file does.
    """
def whisper_hf_state_dict(model: CTranslate2Model) -> dict:
    """
    The HF WhisperForConditionalGeneration state dict of a CTranslate2 Whisper model.
    """
