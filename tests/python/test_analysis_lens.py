"""Logit lens and encoder lens against HF's hidden states on the same weights."""
import pytest
import torch

import speechlens as sl
from analysis_helpers import save_tiny_whisper

TOKENS = torch.tensor([[1, 5, 9, 14, 3]])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_whisper_lens")
    hf = save_tiny_whisper(folder, seed=4)
    return sl.load(folder), hf


@pytest.fixture(scope="module")
def mel():
    return torch.randn(1, 8, 16, generator=torch.Generator().manual_seed(5))


def test_logit_lens_matches_hf_hidden_states(models, mel):
    model, hf = models
    lens = sl.lens.logit_lens(model, mel, TOKENS)
    assert lens.logits.shape == (3, 1, 5, 96)
    assert lens.hook_names[0] == "decoder.blocks.0.hook_resid_pre"
    with torch.no_grad():
        out = hf(input_features=mel, decoder_input_ids=TOKENS, output_hidden_states=True)
        final_norm = hf.model.decoder.layer_norm
        w_u = hf.proj_out.weight
        # HF's decoder hidden_states: the input of each layer, then the normed final output.
        for layer in range(2):
            expected = final_norm(out.decoder_hidden_states[layer]) @ w_u.T
            torch.testing.assert_close(lens.logits[layer], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(lens.logits[-1], out.logits, atol=1e-5, rtol=0)
    assert lens.top_tokens(2).shape == (3, 1, 5, 2)
    ranks = lens.rank_of(out.logits.argmax(-1))
    assert (ranks[-1] == 0).all()


def test_encoder_lens_matches_hf_with_truncated_encoder(models, mel):
    model, hf = models
    result = sl.lens.encoder_lens(model, mel, tokens=TOKENS, max_new_tokens=6)
    assert result.layers == [0, 1]
    with torch.no_grad():
        enc = hf.model.encoder(mel, output_hidden_states=True)
        for layer in result.layers:
            audio = hf.model.encoder.layer_norm(enc.hidden_states[layer + 1])
            expected = hf(encoder_outputs=(audio,), decoder_input_ids=TOKENS).logits
            torch.testing.assert_close(result.logits[layer], expected, atol=1e-5, rtol=0)
    # The last layer's lens is the model itself.
    assert result.tokens[-1] == model.generate(mel, max_new_tokens=6)
    torch.testing.assert_close(sl.lens.encoder_lens_audio(model, mel, 1), model.encode(mel), atol=1e-6, rtol=0)


def test_lens_errors(models, mel):
    model, _ = models
    with pytest.raises(ValueError, match="out of range"):
        sl.lens.encoder_lens_audio(model, mel, 5)
    assert model._core.hook_count == 0
