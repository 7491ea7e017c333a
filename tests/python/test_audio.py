"""Parity of the audio front end with HF transformers and scipy (speechlens._C.audio)."""
import math
import pathlib
import shutil
import subprocess

import numpy as np
import pytest
import torch

import speechlens
from speechlens import _C

audio = _C.audio
transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()
from transformers import Wav2Vec2FeatureExtractor, WhisperFeatureExtractor  # noqa: E402

SR = 16000
PARITY = 1e-4  # max |ours - HF| on log-mel features


# ----------------------------------------------------------------------------- signals
def _rng(seed):
    return np.random.default_rng(seed)


def white_noise(seconds, seed=0, scale=0.1):
    return (_rng(seed).standard_normal(int(seconds * SR)) * scale).astype(np.float32)


def clipped(seconds, seed=1):
    t = np.arange(int(seconds * SR)) / SR
    x = 3.0 * np.sin(2 * np.pi * 220 * t) + _rng(seed).standard_normal(t.size) * 0.2
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def silence(seconds):
    return np.zeros(int(seconds * SR), dtype=np.float32)


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """espeak-ng speech (22050 Hz) resampled to 16 kHz by our own loader."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    text = ("Mechanistic interpretability of speech models starts from the log mel "
            "spectrogram. The quick brown fox jumps over the lazy dog.")
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    clip, rate = audio.read_audio(path)
    assert rate == 22050 and clip.numel() > 22050
    return audio.load_audio(path, SR).numpy()


def tile_to(x, seconds):
    n = int(seconds * SR)
    return np.resize(x, n).astype(np.float32)


def hf_features(extractor, waves, **kwargs):
    return extractor(waves, sampling_rate=SR, return_tensors="pt", **kwargs)


# ----------------------------------------------------------------------------- log-mel
@pytest.mark.parametrize("n_mels", [80, 128])
def test_mel_filter_bank_matches_hf(n_mels):
    from transformers.audio_utils import mel_filter_bank

    ref = mel_filter_bank(201, n_mels, 0.0, 8000.0, SR, norm="slaney", mel_scale="slaney")
    ours = audio.slaney_mel_filter_bank(201, n_mels, 0.0, 8000.0, SR).numpy()
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-15)


SIGNALS = {
    "noise": white_noise,
    "silence": silence,
    "clipped": clipped,
}


@pytest.mark.parametrize("n_mels", [80, 128])
@pytest.mark.parametrize("seconds", [1, 30, 45])
@pytest.mark.parametrize("kind", ["speech", "noise", "silence", "clipped"])
def test_whisper_log_mel_matches_hf(kind, seconds, n_mels, speech):
    wave = tile_to(speech, seconds) if kind == "speech" else SIGNALS[kind](seconds)
    ref = hf_features(WhisperFeatureExtractor(feature_size=n_mels), wave).input_features[0]
    ours = audio.WhisperFeatureExtractor(feature_size=n_mels)(torch.from_numpy(wave))
    assert ours.shape == ref.shape == (n_mels, 3000)
    assert (ours - ref).abs().max().item() <= PARITY


@pytest.mark.parametrize("n_mels", [80, 128])
@pytest.mark.parametrize("padding", ["max_length", "longest"])
def test_whisper_batch_with_attention_mask_matches_hf(n_mels, padding, speech):
    waves = [tile_to(speech, 1.3), white_noise(45, seed=3), clipped(0.5), silence(2.01)]
    if padding == "longest":
        waves[1] = white_noise(7.77, seed=3)
    ref = hf_features(WhisperFeatureExtractor(feature_size=n_mels), waves, padding=padding,
                      return_attention_mask=True)
    extractor = audio.WhisperFeatureExtractor(feature_size=n_mels)
    feats, mask = extractor.batch([torch.from_numpy(w) for w in waves], padding=padding)
    assert feats.shape == ref.input_features.shape
    assert (feats - ref.input_features).abs().max().item() <= PARITY
    assert mask.dtype == ref.attention_mask.dtype
    assert torch.equal(mask, ref.attention_mask)


def test_whisper_from_preprocessor_config():
    config = WhisperFeatureExtractor(feature_size=128).to_dict()
    extractor = audio.WhisperFeatureExtractor.from_config(config)
    assert extractor.n_mels == 128 and extractor.n_samples == 480000
    wave = white_noise(2.0)
    ref = hf_features(WhisperFeatureExtractor(**config), wave).input_features[0]
    assert (extractor(torch.from_numpy(wave)) - ref).abs().max().item() <= PARITY
    assert torch.equal(audio.whisper_log_mel(torch.from_numpy(wave), 128), extractor(torch.from_numpy(wave)))


def test_whisper_rejects_bad_input():
    extractor = audio.WhisperFeatureExtractor()
    with pytest.raises(speechlens.InvalidInputError):
        extractor(torch.zeros(0))
    with pytest.raises(speechlens.InvalidInputError):
        extractor.batch([torch.zeros(16000 * 31)], padding="max_length", truncation=False)
    with pytest.raises(speechlens.InvalidInputError):
        extractor.batch([torch.zeros(100)], padding="sideways")


# ----------------------------------------------------------------------------- wav2vec2
@pytest.mark.parametrize("return_attention_mask", [True, False])
@pytest.mark.parametrize("do_normalize", [True, False])
def test_wav2vec2_inputs_match_hf(do_normalize, return_attention_mask, speech):
    waves = [speech[:12345], white_noise(0.4, seed=7, scale=0.5) + 0.2, clipped(1.0)]
    hf = Wav2Vec2FeatureExtractor(do_normalize=do_normalize,
                                  return_attention_mask=return_attention_mask)
    ref = hf(waves, sampling_rate=SR, padding=True, return_tensors="pt")
    values, mask = audio.prepare_waveforms([torch.from_numpy(w) for w in waves], do_normalize,
                                           return_attention_mask)
    assert values.shape == ref.input_values.shape
    assert (values - ref.input_values).abs().max().item() <= 1e-5
    if return_attention_mask:
        assert torch.equal(mask, ref.attention_mask)
    else:
        assert mask is None


def test_wav2vec2_single_clip_matches_hf(speech):
    ref = Wav2Vec2FeatureExtractor()(speech, sampling_rate=SR, return_tensors="pt").input_values
    ours = audio.normalize_waveform(torch.from_numpy(speech))
    assert (ours - ref[0]).abs().max().item() <= 1e-5


# ----------------------------------------------------------------------------- resampling
RATE_PAIRS = [(44100, 16000), (48000, 16000), (8000, 16000), (22050, 16000)]


def _sweep(rate, n, seconds, f0, f1):
    t = np.arange(n) / rate
    return 0.5 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds)))


def resample_errors(from_rate, to_rate, seconds=2.0):
    """Errors on a linear sine sweep 20 Hz -> 0.8 x the lower Nyquist frequency, 50 ms edges
    excluded: against scipy.signal.resample_poly and against the exact swept sine."""
    import scipy.signal

    f1 = 0.8 * min(from_rate, to_rate) / 2
    x = _sweep(from_rate, int(from_rate * seconds), seconds, 20.0, f1)
    ours = audio.resample(torch.from_numpy(x), from_rate, to_rate).numpy()
    g = math.gcd(from_rate, to_rate)
    ref = scipy.signal.resample_poly(x, to_rate // g, from_rate // g)
    exact = _sweep(to_rate, ours.size, seconds, 20.0, f1)
    assert ours.size == ref.size
    edge = int(0.05 * to_rate)
    inner = slice(edge, ours.size - edge)
    d_scipy, d_exact = ours[inner] - ref[inner], ours[inner] - exact[inner]
    return {
        "scipy_max": np.abs(d_scipy).max(), "scipy_rms": np.sqrt(np.mean(d_scipy**2)),
        "exact_max": np.abs(d_exact).max(), "exact_rms": np.sqrt(np.mean(d_exact**2)),
        "scipy_vs_exact_max": np.abs(ref[inner] - exact[inner]).max(),
    }


@pytest.mark.parametrize("from_rate,to_rate", RATE_PAIRS)
def test_resample_sweep_error_bounds(from_rate, to_rate):
    err = resample_errors(from_rate, to_rate)
    # resample_poly's own filter (Kaiser beta 5, cutoff at Nyquist) is ~1e-3 off the exact
    # sweep; ours is ~1e-6 off it, so the distance to scipy is scipy's own error.
    assert err["exact_max"] < 5e-6 and err["exact_rms"] < 1e-6, err
    assert err["scipy_max"] < 2e-3 and err["scipy_rms"] < 5e-4, err


def test_resample_batch_and_float32():
    x = torch.randn(3, 22050, dtype=torch.float64)
    y = audio.resample(x, 22050, 16000)
    assert y.shape == (3, 16000) and y.dtype == torch.float64
    assert torch.allclose(y[1], audio.resample(x[1], 22050, 16000))
    y32 = audio.resample(x.float(), 22050, 16000)
    assert y32.dtype == torch.float32 and (y32.double() - y).abs().max() < 1e-5


# ----------------------------------------------------------------------------- files
def test_read_and_load_audio(tmp_path):
    x = torch.from_numpy(_sweep(44100, 44100, 1.0, 20, 5000)).float()
    audio.write_wav(tmp_path / "a.wav", torch.stack([x, x]), 44100, "pcm16")
    clip, rate = audio.read_audio(tmp_path / "a.wav")
    assert rate == 44100 and clip.shape == (44100,)
    assert (clip - x).abs().max() < 1 / 32768 + 1e-7
    assert audio.load_audio(tmp_path / "a.wav").shape == (16000,)


def test_bad_files_raise_clear_errors(tmp_path):
    with pytest.raises(speechlens.SpeechLensIOError, match="does not exist"):
        audio.read_audio(tmp_path / "missing.wav")
    (tmp_path / "junk.wav").write_bytes(b"not audio at all" * 100)
    with pytest.raises(speechlens.InvalidInputError, match="Format not recognised"):
        audio.read_audio(tmp_path / "junk.wav")
    nan = torch.zeros(100)
    nan[42] = float("nan")
    audio.write_wav(tmp_path / "nan.wav", nan, SR)
    with pytest.raises(speechlens.InvalidInputError, match="frame 42"):
        audio.read_audio(tmp_path / "nan.wav")


# ----------------------------------------------------------------------------- hostile input
def _run_limited(code, headroom_gib=1.0):
    """Runs `code` in a fresh interpreter whose address space is capped at what importing
    speechlens took plus `headroom_gib`: a multi-gigabyte allocation fails there."""
    import sys

    prelude = (
        "import resource, speechlens\n"
        "from speechlens import _C\n"
        "pages = int(open('/proc/self/statm').read().split()[0])\n"
        f"limit = pages * resource.getpagesize() + int({headroom_gib} * (1 << 30))\n"
        "resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
    )
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("rate", [44101, 16001])
def test_tiny_wav_at_a_coprime_rate_resamples_in_bounded_memory(tmp_path, rate):
    """A 64-byte WAV at 44,101 Hz built a 5.7 GB resampling kernel (16,001 Hz: 6.1 GB)."""
    path = tmp_path / "odd.wav"
    audio.write_wav(path, torch.zeros(10), rate, "pcm16")
    assert path.stat().st_size == 64
    result = _run_limited(f"print(_C.audio.load_audio({str(path)!r}).numel())")
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout) == math.ceil(10 * 16000 / rate)


def test_absurd_sample_rate_is_refused_clearly():
    """2^31 - 1 Hz asked for a 17 GB kernel; now an InvalidInputError naming the rate (run
    capped, so a regression cannot take the test machine's memory)."""
    code = (
        "import torch, speechlens\n"
        "for rates in [(2147483647, 16000), (16000, 5000000)]:\n"
        "    try:\n"
        "        _C.audio.resample(torch.zeros(8), *rates)\n"
        "        print('accepted')\n"
        "    except speechlens.InvalidInputError as e:\n"
        "        print('refused:', e)\n"
    )
    result = _run_limited(code)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert "from_rate = 2147483647 Hz" in lines[0] and "to_rate = 5000000 Hz" in lines[1], lines


@pytest.mark.parametrize("config,key", [
    ({"chunk_length": 300000}, "chunk_length"),  # int overflow: n_samples was 505,032,704
    ({"chunk_length": 134217}, "chunk_length"),  # 8.6 GB per padded clip
    ({"n_fft": 20_000_000}, "n_fft"),            # 9.4 GB mel filter bank
    ({"feature_size": 10**8}, "feature_size"),
    ({"sampling_rate": 2**31 - 1}, "sampling_rate"),
    ({"hop_length": 0}, "hop_length"),
])
def test_hostile_preprocessor_config_is_refused_before_allocating(config, key):
    code = (
        "import json, speechlens\n"
        "try:\n"
        f"    _C.audio.WhisperFeatureExtractor.from_config(json.loads({json_dumps(config)!r}))\n"
        "    print('accepted')\n"
        "except speechlens.InvalidInputError as e:\n"
        "    print('refused:', e)\n"
    )
    if key == "chunk_length":  # the keyword constructor goes through the same checks
        code += (
            "try:\n"
            f"    _C.audio.WhisperFeatureExtractor(chunk_length={config['chunk_length']})\n"
            "    print('accepted')\n"
            "except speechlens.InvalidInputError as e:\n"
            "    print('refused:', e)\n"
        )
    result = _run_limited(code)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines and all(line.startswith("refused:") and f"'{key}'" in line for line in lines), lines


def json_dumps(value):
    import json

    return json.dumps(value)
