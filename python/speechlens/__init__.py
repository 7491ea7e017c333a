"""SpeechLens: mechanistic interpretability for speech models.

    import speechlens as sl
    model = sl.load("path/to/hf-checkpoint")
    logits, cache = model.run_with_cache(feats, tokens, names_filter="encoder.blocks.*.hook_resid_post")

`import torch` happens first: the extension links the LibTorch inside the torch package and
must find it loaded.
"""
import torch  # noqa: F401  (must precede the extension)

from . import _C
from ._C import HookNameError, InvalidInputError, SpeechLensError, SpeechLensIOError
from .cache import ActivationCache
from .loading import EMBEDDED_MODELS, load
from .model import Config, HookedModel
from ._inputs import ModelInputs
from .hubert import HookedHubert
from .whisper import HookedWhisper
from .qwen2_audio import HookedQwen2Audio
from . import lens, patching, plot, probes, stats  # noqa: E402  (analysis toolkit)

__version__ = _C.version()


Inputs = ModelInputs


def load_audio(path, sampling_rate: int = 16000) -> torch.Tensor:
    """Decodes an audio file (WAV, FLAC, OGG, ...) to a mono float32 tensor [T] resampled to
    ``sampling_rate`` (16 kHz, what Whisper and HuBERT take)."""
    return _C.audio.load_audio(str(path), sampling_rate)


__all__ = [
    "load",
    "load_audio",
    "EMBEDDED_MODELS",
    "HookedModel",
    "ModelInputs",
    "Inputs",
    "HookedWhisper",
    "HookedHubert",
    "HookedQwen2Audio",
    "ActivationCache",
    "Config",
    "SpeechLensError",
    "InvalidInputError",
    "HookNameError",
    "SpeechLensIOError",
]
