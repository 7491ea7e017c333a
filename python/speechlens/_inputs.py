"""Inputs as users pass them: waveforms (paths, tensors, numpy arrays, integer PCM, lists of
clips) and model inputs (ModelInputs, dicts, the model's positional arguments)."""
from __future__ import annotations

import os
import pathlib
import warnings
from typing import Any

import torch

from . import _C

ModelInputs = _C.models.ModelInputs

# Integer PCM -> float in [-1, 1): the scale of each integer type.
_PCM_SCALE = {torch.int16: 32768.0, torch.int32: 2147483648.0, torch.int8: 128.0}


def core(model):
    """The C++ model behind a Python wrapper (or the C++ model itself)."""
    return getattr(model, "_core", model)


def _as_float_wave(x, what: str) -> torch.Tensor:
    """A float32 tensor from a tensor or array, integer PCM scaled to [-1, 1)."""
    if not isinstance(x, torch.Tensor):
        try:
            import numpy as np

            if isinstance(x, np.ndarray):
                if x.dtype == np.uint16 or x.dtype == np.uint32 or x.dtype == np.uint64:
                    raise TypeError(f"{what}: unsigned {x.dtype} audio is not a PCM format; convert it to float in "
                                    "[-1, 1] first")
                x = torch.from_numpy(np.ascontiguousarray(x))
        except ImportError:  # pragma: no cover - numpy ships with torch's dependencies
            pass
        x = torch.as_tensor(x)
    if x.dtype in (torch.bool,) or x.is_complex():
        raise TypeError(f"{what}: a waveform must be real-valued audio, got {x.dtype}")
    if x.dtype == torch.uint8:  # 8-bit WAV PCM is unsigned, centred on 128
        return (x.to(torch.float32) - 128.0) / 128.0
    if x.dtype in _PCM_SCALE:
        return x.to(torch.float32) / _PCM_SCALE[x.dtype]
    if not x.is_floating_point():
        raise TypeError(f"{what}: {x.dtype} samples have no PCM scale; pass float audio in [-1, 1] or int16/int32 PCM")
    return x if x.dtype == torch.float32 or x.requires_grad else x.to(torch.float32)


def as_waves(wave, sampling_rate: int | None, model_rate: int, stacklevel: int = 3) -> tuple[list[torch.Tensor], int, bool]:
    """(clips, their rate, single) from a path, a 1-D wave, a [B, T] batch, an array or a list of
    those. Paths are decoded and resampled to ``model_rate``. Without ``sampling_rate``, arrays are
    assumed to be at the model's rate (as HF's feature extractors do) and a warning says so."""
    single = False
    if isinstance(wave, (str, os.PathLike)):
        from . import load_audio

        return [load_audio(pathlib.Path(wave), model_rate)], model_rate, True
    if isinstance(wave, (list, tuple)):
        if not wave:
            raise ValueError("no clips given")
        if all(isinstance(w, (str, os.PathLike)) for w in wave):
            from . import load_audio

            return [load_audio(pathlib.Path(w), model_rate) for w in wave], model_rate, False
        clips = [_as_float_wave(w, f"clip {i}") for i, w in enumerate(wave)]
    else:
        t = _as_float_wave(wave, "wave")
        if t.dim() == 1:
            clips, single = [t], True
        elif t.dim() == 2:
            clips = list(t)
        else:
            raise ValueError(f"a waveform is [samples] or [batch, samples], got shape {tuple(t.shape)}")
    for i, c in enumerate(clips):
        if c.dim() != 1:
            raise ValueError(f"clip {i} must be mono [samples], got shape {tuple(c.shape)}")
    if sampling_rate is None:
        warnings.warn(f"no sampling_rate given: assuming the audio is at {model_rate} Hz, the model's rate. Pass "
                      "sampling_rate= to have other rates resampled (or load files with sl.load_audio).",
                      UserWarning, stacklevel=stacklevel)
        sampling_rate = model_rate
    return clips, int(sampling_rate), single


def as_inputs(model, inputs: Any) -> ModelInputs:
    """ModelInputs from a ModelInputs, a dict of its fields, a tuple of the model's positional
    arguments (``model(*inputs)``), or a features tensor."""
    if isinstance(inputs, ModelInputs):
        return inputs
    if isinstance(inputs, dict):
        return ModelInputs(**inputs)
    if hasattr(model, "make_inputs"):
        if isinstance(inputs, (tuple, list)):
            return model.make_inputs(*inputs)
        return model.make_inputs(inputs)
    if isinstance(inputs, (tuple, list)):
        return ModelInputs(*inputs)
    return ModelInputs(torch.as_tensor(inputs))
