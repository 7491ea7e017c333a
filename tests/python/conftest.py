"""Shared fixtures: tiny random-initialised HF models, built once per session and saved as
checkpoint folders that SpeechLens loads through its real loading code."""
import pathlib

import pytest
import torch

# Three Whisper shapes: an odd head count, 128 mel bins (large-v3 layout), uneven stacks.
WHISPER_CONFIGS = {
    "odd_heads": dict(num_mel_bins=80, d_model=48, encoder_layers=2, decoder_layers=2, encoder_attention_heads=3,
                      decoder_attention_heads=3, encoder_ffn_dim=96, decoder_ffn_dim=96),
    "mel128": dict(num_mel_bins=128, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                   decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128),
    "uneven": dict(num_mel_bins=80, d_model=32, encoder_layers=1, decoder_layers=3, encoder_attention_heads=2,
                   decoder_attention_heads=4, encoder_ffn_dim=80, decoder_ffn_dim=48),
}


def build_tiny_whisper(folder: pathlib.Path, seed: int = 0, **overrides):
    import transformers

    torch.manual_seed(seed)
    settings = dict(vocab_size=320, max_source_positions=60, max_target_positions=48, decoder_start_token_id=1,
                    eos_token_id=2, pad_token_id=2, bos_token_id=2, begin_suppress_tokens=[3, 2],
                    suppress_tokens=[4, 5, 6])
    settings.update(WHISPER_CONFIGS["odd_heads"])
    settings.update(overrides)
    config = transformers.WhisperConfig(**settings)
    model = transformers.WhisperForConditionalGeneration(config).eval()
    # Random init leaves layer norms at identity; perturb them so the tests see their effect.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(folder)
    return model


@pytest.fixture(scope="session")
def tiny_whisper_dir(tmp_path_factory):
    """Path of the default tiny Whisper checkpoint (odd head count)."""
    folder = tmp_path_factory.mktemp("whisper_odd_heads")
    build_tiny_whisper(folder)
    return folder


@pytest.fixture(scope="session", params=sorted(WHISPER_CONFIGS))
def whisper_pair(request, tmp_path_factory):
    """(HF model with eager attention, its checkpoint folder, mel bins) for each config."""
    import transformers

    folder = tmp_path_factory.mktemp(f"whisper_{request.param}")
    build_tiny_whisper(folder, seed=len(request.param), **WHISPER_CONFIGS[request.param])
    hf = transformers.WhisperForConditionalGeneration.from_pretrained(folder, attn_implementation="eager").eval()
    return hf, folder, WHISPER_CONFIGS[request.param]["num_mel_bins"]
