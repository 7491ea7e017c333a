"""
Hook points, contexts and activation caches
"""
from __future__ import annotations
import torch
import typing
__all__: list[str] = ['ActivationCacheStore', 'HookContext', 'glob_match']
class HookContext:
    """
    What a hook receives as `hook=`: the point's name, stack, layer, decode step, its time axes and the batch's valid lengths.
    """
    def __repr__(self) -> str:
        ...
    def layer(self) -> int:
        """
        Block index, or -1 for model-level points.
        """
    def position_mask(self, positions: typing.SupportsInt | typing.SupportsIndex) -> typing.Any:
        """
        [batch, positions] bool mask of real (unpadded) positions, or None.
        """
    @property
    def decode_step(self) -> int:
        ...
    @property
    def direction(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def stack(self) -> str:
        ...
    @property
    def time_axes(self) -> list:
        """
        [(dim, unit)] of the activation's time axes, the main one first.
        """
    @property
    def unit(self) -> str:
        """
        Unit of the activation's main time axis ('mel', 'encoder', 'samples', 'decoder', 'lm', ...; '' when it has none).
        """
    @property
    def valid_lengths(self) -> typing.Any:
        """
        [batch] valid positions along the main time axis, or None when every position is valid.
        """
class ActivationCacheStore:
    """
    C++ activation store filled by C++ recording hooks (no Python per call).
    """
    def __init__(self, detach: bool = True, device: str | None = None, dtype: torch.dtype | None = None, remove_batch_dim: bool = False, trim_padding: bool = False, max_bytes: typing.SupportsInt | typing.SupportsIndex | None = None) -> None:
        ...
    def __len__(self) -> int:
        ...
    def clear(self) -> None:
        ...
    def lengths(self, name: str) -> typing.Any:
        """
        [batch] valid lengths along the activation's main time axis, or None.
        """
    def mask(self, name: str) -> typing.Any:
        """
        [batch, positions] bool mask of real positions along the main time axis, or None.
        """
    def names(self) -> list[str]:
        ...
    def steps(self, name: str) -> list[torch.Tensor]:
        ...
    def time_axes(self, name: str) -> list:
        ...
    @property
    def bytes(self) -> int:
        ...
def glob_match(pattern: str, name: str) -> bool:
    """
    Shell-style glob match as hook selectors use it.
    """
