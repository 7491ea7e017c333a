"""The committed tiny HuBERT CTC checkpoint (python/speechlens/embedded/tiny-hubert-digits-commands).

Loads it with Hugging Face transformers and measures its word error rate on a small held-out
set synthesized here with espeak-ng: voices never heard in training, speaking rates outside the
training range. The held-out set and the transcriber are fixtures, so a SpeechLens test of the
same checkpoint (speechlens.load("tiny-hubert-digits-commands")) can reuse them and compare.
"""
import json
import pathlib
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL_DIR = REPO_ROOT / "python" / "speechlens" / "embedded" / "tiny-hubert-digits-commands"
sys.path.insert(0, str(REPO_ROOT / "scripts"))
import tiny_hubert_data as data  # noqa: E402

HELDOUT_UTTERANCES = 30
MAX_HELDOUT_WER = 0.20
MAX_CHECKPOINT_BYTES = 8 * 1024 * 1024

needs_espeak = pytest.mark.skipif(
    not data.espeak_available(), reason="espeak-ng is not installed (Debian: apt-get install espeak-ng); "
    "it synthesizes the held-out speech"
)


@pytest.fixture(scope="module")
def heldout_set():
    """(reference texts, 16 kHz float32 waves), identical on every run."""
    specs = data.heldout_specs(HELDOUT_UTTERANCES, seed=data.HELDOUT_SEED)
    return [s.text for s in specs], data.heldout_waves(specs, seed=data.HELDOUT_SEED)


@pytest.fixture(scope="module")
def hf_model():
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    torch = pytest.importorskip("torch")
    model = transformers.HubertForCTC.from_pretrained(MODEL_DIR, dtype=torch.float32)
    processor = transformers.Wav2Vec2Processor.from_pretrained(MODEL_DIR)
    return model, processor


def test_checkpoint_files_are_complete_and_small():
    for name in ("config.json", "model.safetensors", "vocab.json", "tokenizer_config.json",
                 "special_tokens_map.json", "preprocessor_config.json", "README.md"):
        assert (MODEL_DIR / name).is_file(), f"{name} missing from {MODEL_DIR}"
    assert (MODEL_DIR / "model.safetensors").stat().st_size <= MAX_CHECKPOINT_BYTES

    config = json.loads((MODEL_DIR / "config.json").read_text())
    assert config["model_type"] == "hubert"
    assert config["architectures"] == ["HubertForCTC"]
    assert config["feat_extract_norm"] == "group" and config["do_stable_layer_norm"] is False
    total_stride = 1
    for stride in config["conv_stride"]:
        total_stride *= stride
    assert total_stride == 320, "one CTC frame per 20 ms at 16 kHz, as in HuBERT base"

    vocab = json.loads((MODEL_DIR / "vocab.json").read_text())
    assert vocab == data.build_vocab()
    assert vocab["<pad>"] == 0 == config["pad_token_id"], "<pad> is the CTC blank"
    assert config["vocab_size"] == len(vocab)

    preprocessor = json.loads((MODEL_DIR / "preprocessor_config.json").read_text())
    assert preprocessor["feature_extractor_type"] == "Wav2Vec2FeatureExtractor"
    assert preprocessor["do_normalize"] is True and preprocessor["return_attention_mask"] is True
    assert preprocessor["sampling_rate"] == data.SAMPLE_RATE


def test_heldout_split_is_disjoint_from_training():
    assert not set(data.TRAIN_VOICES) & set(data.HELDOUT_VOICES)
    train_low, train_high = data.TRAIN_SPEED_RANGE
    for low, high in data.HELDOUT_SPEED_RANGES:
        assert high < train_low or low > train_high


def test_word_errors_counts_substitutions_insertions_deletions():
    assert data.word_errors("one two three", "one two three") == (0, 3)
    assert data.word_errors("one two three", "one too three") == (1, 3)
    assert data.word_errors("one two three", "one three") == (1, 3)
    assert data.word_errors("one two", "one two two go") == (2, 2)
    assert data.word_errors("yes", "") == (1, 1)
    assert data.word_error_rate(["a b", "c d"], ["a b", "x"]) == pytest.approx(0.5)


@needs_espeak
def test_heldout_set_is_deterministic(heldout_set):
    texts, waves = heldout_set
    again = data.heldout_waves(data.heldout_specs(2, seed=data.HELDOUT_SEED), seed=data.HELDOUT_SEED)
    assert len(texts) == HELDOUT_UTTERANCES
    # Same specs -> same synthesis; the first utterance also gets the same noise draw.
    assert (again[0] == waves[0]).all()
    assert all(w.dtype.name == "float32" and 0.2 * data.SAMPLE_RATE < len(w) < 4 * data.SAMPLE_RATE for w in waves)


@needs_espeak
def test_hf_model_heldout_wer(hf_model, heldout_set):
    model, processor = hf_model
    texts, waves = heldout_set
    hyps = data.transcribe_greedy(model, processor, waves)
    wer = data.word_error_rate(texts, hyps)
    worst = [(t, h) for t, h in zip(texts, hyps) if t != h][:5]
    assert wer <= MAX_HELDOUT_WER, f"held-out WER {wer:.3f} > {MAX_HELDOUT_WER}; e.g. {worst}"


@needs_espeak
def test_speechlens_transcribes_the_heldout_set_like_hf(hf_model, heldout_set):
    import torch

    import speechlens as sl

    model = sl.load("tiny-hubert-digits-commands")  # the embedded name resolves to this checkpoint
    texts, waves = heldout_set
    ours = [model.transcribe(torch.from_numpy(w)) for w in waves]
    theirs = data.transcribe_greedy(*hf_model, waves)
    assert ours == theirs
    assert data.word_error_rate(texts, ours) <= MAX_HELDOUT_WER
