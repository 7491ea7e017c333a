"""Whisper log-mel accuracy: every implementation against the same method in float64, and the
waveform gradient against HF's torch path made differentiable. Prints the figures of
docs/audio.md ("Accuracy" and "Gradients").

    PYTHONPATH=python:tests/python python bench/log_mel_accuracy.py
"""
import numpy as np
import torch

from speechlens import _C

import transformers
from transformers import WhisperFeatureExtractor
from transformers.models.whisper import feature_extraction_whisper as hf_module

from test_audio_grad import hf_torch_log_mel, log_mel_grads, relative_max_error, speechlike

transformers.logging.set_verbosity_error()
try:
    import asrfront.whisper as asrfront_whisper
except ImportError:
    asrfront_whisper = None

SR = 16000


def float64_log_mel(hf, wave):
    """HF's method (torch path) in float64 from the float32 samples: the reference."""
    x = torch.from_numpy(np.pad(wave, (0, max(0, 480000 - wave.size)))[:480000]).double()
    stft = torch.stft(x, 400, 160, window=torch.hann_window(400, dtype=torch.float64),
                      return_complex=True)
    mel = torch.from_numpy(hf.mel_filters).double().T @ (stft[..., :-1].abs() ** 2)
    log_spec = torch.clamp(mel, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4) / 4).numpy()


def signals():
    rng = np.random.default_rng(0)
    t = np.arange(30 * SR) / SR
    return {
        "white noise": (rng.standard_normal(t.size) * 0.1).astype(np.float32),
        "440 Hz tone": (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32),
        "harmonics": speechlike(30.0).numpy(),
        "clipped": np.clip(3 * np.sin(2 * np.pi * 220 * t) + rng.standard_normal(t.size) * 0.2,
                           -1, 1).astype(np.float32),
        "1 s in 30 s": np.pad(speechlike(1.0, seed=3).numpy(), (0, 29 * SR)),
    }


def main():
    hf = WhisperFeatureExtractor()
    ours = _C.audio.WhisperFeatureExtractor()
    print("max |features - float64 reference| (feature units; the features span 2.0)")
    names = ["speechlens kernel", "speechlens ATen", "hf-torch", "hf-numpy", "asrfront"]
    print(f"{'signal':>12} " + " ".join(f"{n:>17}" for n in names) + f" {'kernel vs hf-torch':>18}")
    for label, wave in signals().items():
        ref = float64_log_mel(hf, wave)
        outputs = {
            "speechlens kernel": ours(torch.from_numpy(wave)).numpy(),
            "speechlens ATen": ours(torch.from_numpy(wave).requires_grad_(True)).detach().numpy(),
            "hf-torch": hf(wave, sampling_rate=SR, return_tensors="np").input_features[0],
        }
        saved = hf_module.is_torch_available
        hf_module.is_torch_available = lambda: False
        outputs["hf-numpy"] = hf(wave, sampling_rate=SR, return_tensors="np").input_features[0]
        hf_module.is_torch_available = saved
        if asrfront_whisper is not None:
            outputs["asrfront"] = asrfront_whisper.log_mel(wave)
        cells = [f"{np.abs(outputs[n] - ref).max():>17.1e}" if n in outputs else f"{'-':>17}"
                 for n in names]
        vs_hf = np.abs(outputs["speechlens kernel"] - outputs["hf-torch"]).max()
        print(f"{label:>12} " + " ".join(cells) + f" {vs_hf:>18.1e}")

    print("\nwaveform gradient of sum(weights * features), random weights: "
          "max |ours - hf-torch| / max |hf-torch|")
    for label, wave in [("harmonics 2 s", speechlike(2.0)), ("noise 2 s", torch.randn(2 * SR) * 0.1)]:
        for n_mels in (80, 128):
            weights = torch.randn(n_mels, 3000, generator=torch.Generator().manual_seed(1))
            _, _, g_ours, g_ref = log_mel_grads(wave, weights, n_mels)
            print(f"  {label}, {n_mels} mels: {relative_max_error(g_ours, g_ref):.1e}")
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
    g_ref = grad_through(lambda x: hf_torch_log_mel(hf, x))
    print(f"  whisper-tiny.en logits -> waveform: {relative_max_error(g_ours, g_ref):.1e}")


if __name__ == "__main__":
    main()
