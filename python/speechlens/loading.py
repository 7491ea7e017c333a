"""speechlens.load: a local HF checkpoint folder, a Hugging Face repo id, or an embedded name."""
from __future__ import annotations

import json
import os
import pathlib

# model_type in config.json -> the class that loads it.
_FAMILIES = {
    "whisper": "HookedWhisper",
    "hubert": "HookedHubert",
    "wav2vec2": "HookedHubert",
    "qwen2_audio": "HookedQwen2Audio",
}

# Files a checkpoint folder needs; anything else in a repo is not downloaded.
_CHECKPOINT_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model"]


def load(name_or_path: str | os.PathLike, device=None, dtype=None):
    """Loads a hooked model.

    ``name_or_path`` is a local HF checkpoint folder (config.json + safetensors), or a Hugging
    Face repo id (``"openai/whisper-tiny"``) resolved through huggingface_hub's cache, which
    downloads when online. ``device`` ("cpu", "cuda", ...) and ``dtype`` ("float32", "float16",
    "bfloat16") convert the weights on load.
    """
    folder = resolve_checkpoint(name_or_path)
    config_path = folder / "config.json"
    try:
        config = json.loads(config_path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{folder} has no config.json; is it a Hugging Face checkpoint folder?") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{config_path} is not valid JSON: {e}") from None
    model_type = config.get("model_type")
    if model_type not in _FAMILIES:
        raise ValueError(f"{folder}: model_type {model_type!r} is not supported "
                         f"(supported: {', '.join(sorted(_FAMILIES))})")
    from . import __dict__ as package

    cls = package[_FAMILIES[model_type]]
    return cls(str(folder), device=device, dtype=dtype)


def resolve_checkpoint(name_or_path: str | os.PathLike) -> pathlib.Path:
    path = pathlib.Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    if path.exists():
        raise ValueError(f"{path} is a file; pass the checkpoint folder that holds config.json")
    if name.count("/") != 1 or name.startswith((".", "/", "~")):
        raise FileNotFoundError(f"{name!r} is neither a checkpoint folder nor a Hugging Face repo id (owner/name)")
    return _from_hub(name)


def _from_hub(repo_id: str) -> pathlib.Path:
    try:
        import huggingface_hub
    except ImportError:
        raise ImportError(f"loading {repo_id!r} from the Hugging Face Hub needs huggingface_hub "
                          "(pip install huggingface_hub), or pass a local checkpoint folder") from None
    from huggingface_hub import constants

    try:
        return pathlib.Path(huggingface_hub.snapshot_download(repo_id, allow_patterns=_CHECKPOINT_PATTERNS))
    except Exception as online_error:  # offline, no such repo, or no network
        try:
            return pathlib.Path(huggingface_hub.snapshot_download(repo_id, allow_patterns=_CHECKPOINT_PATTERNS,
                                                                  local_files_only=True))
        except Exception:
            raise FileNotFoundError(
                f"could not load {repo_id!r}: it is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) "
                f"and downloading it failed ({type(online_error).__name__}: {online_error}). Download it on a "
                "machine with network access or pass a local checkpoint folder") from None
