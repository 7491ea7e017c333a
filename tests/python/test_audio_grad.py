"""Gradients to the waveform through the audio front end (issue 17): the Whisper log-mel, the
wav2vec2 normalisation and the resampler are differentiable when the waveform requires grad.

References: HF's torch log-mel path (`WhisperFeatureExtractor._torch_extract_fbank_features`,
written here with torch ops end to end so it is differentiable), HF's zero-mean unit-variance
normalisation in torch, and the resampler as an explicit float64 matrix built from its
documented formula. Each gradient is also checked against central finite differences."""
import math

import numpy as np
import pytest
import torch

from speechlens import _C

audio = _C.audio
transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()
from transformers import WhisperFeatureExtractor  # noqa: E402

SR = 16000
GRAD_TOL = 1e-4  # max |ours - reference| relative to max |reference| (scale-free)


def relative_max_error(ours, ref):
    return ((ours - ref).abs().max() / ref.abs().max()).item()


def speechlike(seconds, seed=0):
    """A 150 Hz harmonic series with a noise floor: peaked spectra, like voiced speech."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SR), dtype=torch.float64) / SR
    x = sum(torch.sin(2 * math.pi * 150 * h * t + h) / h for h in range(1, 20))
    x = 0.1 * x + 0.01 * torch.randn(t.shape, generator=g, dtype=torch.float64)
    return x.float()


# ----------------------------------------------------------------------------- log-mel
def hf_torch_log_mel(extractor, wave):
    """HF's `_torch_extract_fbank_features` for one clip, step by step, on a torch waveform
    (HF pads with numpy first; here torch pads, so the graph reaches the waveform)."""
    wave = torch.nn.functional.pad(wave, (0, extractor.n_samples - wave.shape[-1]))
    window = torch.hann_window(extractor.n_fft)
    stft = torch.stft(wave, extractor.n_fft, extractor.hop_length, window=window,
                      return_complex=True)
    magnitudes = (stft[..., :-1].abs() ** 2).contiguous()
    mel_filters = torch.from_numpy(extractor.mel_filters).to(torch.float32)
    mel_spec = mel_filters.T @ magnitudes
    log_spec = torch.clamp(mel_spec, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


def log_mel_grads(wave, weights, n_mels=80):
    hf = WhisperFeatureExtractor(feature_size=n_mels)
    ours = audio.WhisperFeatureExtractor(feature_size=n_mels)
    x_ours = wave.clone().requires_grad_(True)
    x_ref = wave.clone().requires_grad_(True)
    f_ours = ours(x_ours)
    f_ref = hf_torch_log_mel(hf, x_ref)
    (f_ours * weights).sum().backward()
    (f_ref * weights).sum().backward()
    return f_ours.detach(), f_ref.detach(), x_ours.grad, x_ref.grad


@pytest.mark.parametrize("n_mels", [80, 128])
@pytest.mark.parametrize("kind", ["speechlike", "noise"])
def test_log_mel_gradient_matches_hf_torch_path(kind, n_mels):
    wave = speechlike(2.0) if kind == "speechlike" else torch.randn(2 * SR) * 0.1
    weights = torch.randn(n_mels, 3000, generator=torch.Generator().manual_seed(1))
    f_ours, f_ref, g_ours, g_ref = log_mel_grads(wave, weights, n_mels)
    assert (f_ours - f_ref).abs().max().item() <= 1e-4
    assert g_ours is not None and torch.isfinite(g_ours).all()
    assert g_ref.abs().max() > 0
    assert relative_max_error(g_ours, g_ref) <= GRAD_TOL


def test_log_mel_gradient_through_the_peak_clamp():
    """Half the frames sit below peak - 8 (a loud burst, then near silence): the clamp's
    gradient goes to the peak, and only there, as with torch's max()."""
    wave = speechlike(2.0)
    wave[SR:] *= 1e-6
    weights = torch.ones(80, 3000)
    f_ours, f_ref, g_ours, g_ref = log_mel_grads(wave, weights)
    clamped = (f_ref == f_ref.min()).float().mean().item()
    assert clamped > 0.3, clamped  # the clamp is active on a large part of the output
    assert relative_max_error(g_ours, g_ref) <= GRAD_TOL


def test_log_mel_gradient_of_a_batch_and_the_list_api():
    clips = [speechlike(1.0, seed=2), speechlike(0.5, seed=3) * 0.3]
    extractor = audio.WhisperFeatureExtractor()
    leaves = [c.clone().requires_grad_(True) for c in clips]
    feats, mask = extractor.batch(leaves, padding="longest")
    feats.sum().backward()
    # Each clip's gradient equals the gradient of its own features alone.
    for b, clip in enumerate(clips):
        assert leaves[b].grad is not None and torch.isfinite(leaves[b].grad).all()
        x = clip.clone().requires_grad_(True)
        padded = torch.nn.functional.pad(x, (0, feats.shape[-1] * 160 - x.numel()))
        extractor.log_mel(padded[None]).sum().backward()
        assert relative_max_error(leaves[b].grad, x.grad) <= 1e-6


def test_log_mel_gradient_agrees_with_finite_differences():
    """Central differences of a loss over a few frames around each probed sample (a local
    loss keeps float32 rounding far below the step's effect)."""
    wave = speechlike(1.0, seed=4)
    extractor = audio.WhisperFeatureExtractor()
    x = wave.clone().requires_grad_(True)
    weights = torch.randn(80, 3000, generator=torch.Generator().manual_seed(5))
    for sample in (4000, 8123, 12000):
        frame = sample // 160
        mask = torch.zeros(80, 3000)
        mask[:, frame - 2: frame + 3] = 1.0
        w = weights * mask
        x.grad = None
        (extractor(x) * w).sum().backward()
        analytic = x.grad[sample].item()
        h = 1e-3
        with torch.no_grad():
            plus, minus = wave.clone(), wave.clone()
            plus[sample] += h
            minus[sample] -= h
            numeric = ((extractor(plus) * w).sum() - (extractor(minus) * w).sum()).item() / (2 * h)
        assert abs(analytic - numeric) <= 2e-2 * max(1.0, abs(analytic)), (sample, analytic, numeric)


def test_no_grad_and_grad_paths_agree():
    """The no-grad kernel and the differentiable ATen path compute the same features."""
    wave = speechlike(3.0)
    extractor = audio.WhisperFeatureExtractor()
    fast = extractor(wave)
    slow = extractor(wave.clone().requires_grad_(True))
    assert slow.requires_grad and not fast.requires_grad
    assert (fast - slow.detach()).abs().max().item() <= 5e-5  # two float32 FFTs
    with torch.no_grad():
        assert not extractor(wave.clone().requires_grad_(True)).requires_grad


def test_gradient_flows_from_whisper_logits_to_the_waveform():
    """Waveform -> C++ log-mel -> whisper-tiny.en -> logits: the gradient reaching the
    waveform equals the one through HF's differentiable log-mel feeding the same model."""
    import speechlens as sl

    model = sl.load("whisper-tiny.en")
    wave = speechlike(1.0, seed=6)
    tokens = torch.tensor([model.prompt()])

    def grad_through(features_of):
        x = wave.clone().requires_grad_(True)
        logits = model.forward(features_of(x)[None], tokens)
        logits[0, -1].log_softmax(-1)[:1000].sum().backward()
        return x.grad

    g_ours = grad_through(model.features)
    g_ref = grad_through(lambda x: hf_torch_log_mel(WhisperFeatureExtractor(), x))
    assert torch.isfinite(g_ours).all() and g_ours.abs().max() > 0
    assert relative_max_error(g_ours, g_ref) <= 1e-3


# ----------------------------------------------------------------------------- normalisation
def hf_normalize(x):
    """HF's zero_mean_unit_var_norm of one clip, in torch (float64 like ours)."""
    x = x.double()
    return ((x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-7)).float()


def test_normalize_gradient_matches_reference_and_finite_differences():
    wave = speechlike(0.05, seed=7) + 0.2
    weights = torch.randn(wave.numel(), generator=torch.Generator().manual_seed(8))
    x = wave.clone().requires_grad_(True)
    (audio.normalize_waveform(x) * weights).sum().backward()
    r = wave.clone().requires_grad_(True)
    (hf_normalize(r) * weights).sum().backward()
    assert relative_max_error(x.grad, r.grad) <= GRAD_TOL

    wide = wave.double()
    for i in (0, 100, 555):
        h = 1e-4
        plus, minus = wide.clone(), wide.clone()
        plus[i] += h
        minus[i] -= h
        numeric = ((hf_normalize(plus).double() - hf_normalize(minus).double()) * weights).sum() / (2 * h)
        assert abs(x.grad[i].item() - numeric.item()) <= 2e-2 * max(1.0, abs(numeric.item()))


@pytest.mark.parametrize("return_attention_mask", [True, False])
def test_prepare_waveforms_gradient_reaches_every_clip(return_attention_mask):
    clips = [speechlike(0.1, seed=9), speechlike(0.05, seed=10) * 3 + 0.1]
    leaves = [c.clone().requires_grad_(True) for c in clips]
    values, _ = audio.prepare_waveforms(leaves, True, return_attention_mask)
    weights = torch.randn(values.shape, generator=torch.Generator().manual_seed(11))
    (values * weights).sum().backward()
    longest = max(c.numel() for c in clips)
    for b, clip in enumerate(clips):
        r = clip.clone().requires_grad_(True)
        if return_attention_mask:  # statistics over the clip's own samples
            ref = hf_normalize(r)
            (ref * weights[b, : clip.numel()]).sum().backward()
        else:  # HF normalises the zero-padded row as a whole
            ref = hf_normalize(torch.nn.functional.pad(r, (0, longest - clip.numel())))
            (ref * weights[b]).sum().backward()
        assert relative_max_error(leaves[b].grad, r.grad) <= GRAD_TOL


# ----------------------------------------------------------------------------- resampling
def resample_matrix(from_rate, to_rate, n_in, n_out, zero_crossings=24, rolloff=0.945, beta=12.0):
    """The resampler as a dense float64 matrix, from its documented formula: output k at time
    k / to_rate is sum_n x[n] h(k / to_rate - n / from_rate), h a Kaiser-windowed sinc with
    cutoff rolloff * min(from, to) / 2 and `zero_crossings` zero crossings each side."""
    g = math.gcd(from_rate, to_rate)
    down, up = from_rate // g, to_rate // g
    cutoff = min(down, up) * rolloff
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    t = (n / down - k / up) * cutoff
    t = np.clip(t, -zero_crossings, zero_crossings)
    window = np.i0(beta * np.sqrt(np.clip(1 - (t / zero_crossings) ** 2, 0, None))) / np.i0(beta)
    return np.sinc(t) * window * cutoff / down


@pytest.mark.parametrize("from_rate,to_rate", [(44100, 16000), (8000, 16000), (22050, 16000)])
def test_resample_gradient_matches_matrix_and_finite_differences(from_rate, to_rate):
    n_in = 600
    wave = torch.randn(n_in, dtype=torch.float64, generator=torch.Generator().manual_seed(12))
    x = wave.clone().requires_grad_(True)
    y = audio.resample(x, from_rate, to_rate)
    weights = torch.randn(y.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(13))
    (y * weights).sum().backward()
    matrix = torch.from_numpy(resample_matrix(from_rate, to_rate, n_in, y.numel()))
    assert (y.detach() - matrix @ wave).abs().max().item() <= 1e-9  # the forward is that matrix
    assert relative_max_error(x.grad, matrix.T @ weights) <= 1e-9
    for i in (0, 123, 599):
        h = 1e-6
        plus, minus = wave.clone(), wave.clone()
        plus[i] += h
        minus[i] -= h
        numeric = ((audio.resample(plus, from_rate, to_rate) - audio.resample(minus, from_rate, to_rate))
                   * weights).sum().item() / (2 * h)
        assert abs(x.grad[i].item() - numeric) <= 1e-6 * max(1.0, abs(numeric))
