"""Packing Python-side model inputs into the C++ ModelInputs the analysis functions take."""
from __future__ import annotations

from typing import Any

import torch

from . import _C


def as_inputs(model, inputs: Any) -> "_C.analysis.ModelInputs":
    """``inputs`` is a features tensor, a tuple ``(features, tokens[, feature_lengths])`` or a
    dict with those keys. Whisper features may omit the batch dim; missing Whisper tokens become
    the model's start-of-transcript prompt."""
    if isinstance(inputs, _C.analysis.ModelInputs):
        return inputs
    if isinstance(inputs, dict):
        features, tokens, lengths = inputs.get("features"), inputs.get("tokens"), inputs.get("feature_lengths")
    elif isinstance(inputs, (tuple, list)):
        if not 1 <= len(inputs) <= 3:
            raise ValueError("inputs as a tuple are (features, tokens[, feature_lengths])")
        features, tokens, lengths = (list(inputs) + [None, None])[:3]
    else:
        features, tokens, lengths = inputs, None, None
    if features is None:
        raise ValueError("model inputs need features")
    features = torch.as_tensor(features)
    if core(model).family == "whisper":
        if features.dim() == 2:
            features = features.unsqueeze(0)
        if tokens is None:
            tokens = torch.tensor([model.prompt()] * features.shape[0])
        tokens = torch.as_tensor(tokens)
        if tokens.dim() == 1:
            tokens = tokens.unsqueeze(0)
    return _C.analysis.ModelInputs(features, tokens, lengths)


def core(model):
    """The C++ model behind a Python wrapper (or the C++ model itself)."""
    return getattr(model, "_core", model)
