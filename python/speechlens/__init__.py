"""SpeechLens: mechanistic interpretability for speech models.

`import torch` happens first: the extension links the LibTorch inside the torch package and
must find it loaded.
"""
import torch  # noqa: F401  (must precede the extension)

from . import _C
from ._C import SpeechLensError, InvalidInputError, HookNameError, SpeechLensIOError

__version__ = _C.version()

__all__ = ["SpeechLensError", "InvalidInputError", "HookNameError", "SpeechLensIOError"]
