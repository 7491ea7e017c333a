"""
SpeechLens C++ core (bindings only; see the speechlens package for the API)
"""
from __future__ import annotations
from speechlens import HookNameError
from . import io
from . import hooks
from . import models
from . import audio
from . import text
from . import analysis
__all__: list[str] = ['HookNameError', 'InvalidInputError', 'SpeechLensError', 'SpeechLensIOError', 'analysis', 'audio', 'hooks', 'io', 'models', 'text', 'torch_version', 'version']
class SpeechLensError(RuntimeError):
    pass
class InvalidInputError(ValueError):
    pass
class SpeechLensIOError(OSError):
    pass
def torch_version() -> str:
    """
    The torch version the C++ core was compiled against.
    """
def version() -> str:
    """
    SpeechLens version string.
    """
