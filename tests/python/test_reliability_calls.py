"""Issue 16's model-side cases: errors whose messages hold bytes that are not UTF-8, hooks
removed from inside hooks, inputs longer than a model takes, audio past Whisper's window."""
import struct

import pytest
import torch

import speechlens as sl

transformers = pytest.importorskip("transformers")

from conftest import build_tiny_whisper  # noqa: E402
import test_model_contract as contract  # noqa: E402


def test_an_error_message_with_non_utf8_bytes_stays_the_error(tmp_path):
    # A safetensors header whose tensor name is not UTF-8: the message quotes the bytes.
    header = b'{"\xff\xfeweight": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}'
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0\0\0\0")
    with pytest.raises((ValueError, OSError)) as info:
        sl._C.io.SafetensorsFile(str(path))
    assert not isinstance(info.value, UnicodeDecodeError)
    message = str(info.value)
    assert "bad.safetensors" in message and "\ufffd" in message  # the bytes are replaced, the error kept


def test_removing_hooks_from_inside_a_hook(contract_whisper):
    model = contract_whisper
    mel = model.features(contract._wave(), sampling_rate=16000)
    calls = []

    def first(t, hook):
        calls.append("first")
        model.reset_hooks()  # removes both hooks of this point while it fires

    def second(t, hook):
        calls.append("second")

    model.add_hook("encoder.blocks.0.hook_resid_post", first)
    model.add_hook("encoder.blocks.0.hook_resid_post", second)
    model(mel)
    model(mel)
    assert calls == ["first"]
    assert model.list_hooks() == []


def test_hubert_refuses_inputs_longer_than_it_takes(contract_hubert):
    model = contract_hubert
    model._core.set_max_input_seconds(1.0)
    try:
        with pytest.raises(ValueError, match="longer than this model takes"):
            model(torch.randn(1, 2 * 16000))
    finally:
        model._core.set_max_input_seconds(300.0)
    assert model(torch.randn(1, 2 * 16000)).shape[0] == 1


def test_audio_past_whispers_window_is_announced(contract_whisper, capfd):
    model = contract_whisper  # 1 s windows
    model.features(contract._wave(1.5), sampling_rate=16000)
    assert "longer than Whisper's" in capfd.readouterr().err


@pytest.fixture(scope="module")
def contract_whisper(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reliability_whisper")
    build_tiny_whisper(folder)
    transformers.WhisperFeatureExtractor(feature_size=80, chunk_length=1).save_pretrained(str(folder))
    return sl.load(folder)


@pytest.fixture(scope="module")
def contract_hubert(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reliability_hubert")
    contract.hubert_fx.build(folder, transformers.HubertForCTC, feat_extract_norm="layer", conv_bias=True)
    return sl.load(folder)
