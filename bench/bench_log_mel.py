"""Whisper log-mel throughput against the physical work and against the peers, in one run.

Rows: 1 s clips (Whisper's 30 s window: zero-padded), 30 s clips, 10-minute clips (the whole
clip, no 30 s window), each as one clip per call and as a batch per call. Contestants:

  fft, mel   the physical work alone, timed as two ops on pre-cut windowed frames: one real
             FFT per frame of signal (torch.fft.rfft, MKL on CPU) and the dense [frames, 201] x
             [201, n_mels] product of their power (torch.matmul); floor = fft + mel. Frames
             wholly in zero padding need no FFT and count zero
  speechlens speechlens._C.audio.WhisperFeatureExtractor (the same call the models use)
  hf-torch   transformers' WhisperFeatureExtractor, its torch path (the default with torch)
  hf-numpy   the same extractor's numpy path (what it runs without torch)
  asrfront   asrfront.whisper (a C front end with its own SIMD FFT), when installed

All on the same inputs in the same process, interleaved (one repetition of each contestant in
turn), the minimum of --reps repetitions reported; the intra-op thread count is set for torch
(floor, speechlens, hf-torch) and passed to asrfront's batch call; numpy's FFT is one thread.
Ratios are contestant / speechlens (> 1: speechlens is faster) and speechlens / floor.

    PYTHONPATH=python python bench/bench_log_mel.py [--threads 1,2] [--reps 7] [--device cpu]

On --device cuda the inputs live on the GPU; speechlens and hf-torch (device="cuda") compute
there and the floor is timed there; hf-numpy and asrfront are CPU-only and are left out.
"""
import argparse
import contextlib
import os
import time

import numpy as np
import torch

from speechlens import _C

import transformers
from transformers import WhisperFeatureExtractor
from transformers.models.whisper import feature_extraction_whisper as hf_module

transformers.logging.set_verbosity_error()

try:
    import asrfront.whisper as asrfront_whisper
except ImportError:  # optional peer
    asrfront_whisper = None

SR, HOP, N_FFT = 16000, 160, 400

# (label, seconds per clip, clips per call, whole clip: no 30 s window)
CASES = [
    ("1 s", 1.0, 1, False),
    ("1 s", 1.0, 64, False),
    ("30 s", 30.0, 1, False),
    ("30 s", 30.0, 16, False),
    ("10 min", 600.0, 1, True),
    ("10 min", 600.0, 2, True),
]


@contextlib.contextmanager
def hf_numpy_path():
    """transformers picks its numpy path when torch is not importable."""
    saved = hf_module.is_torch_available
    hf_module.is_torch_available = lambda: False
    try:
        yield
    finally:
        hf_module.is_torch_available = saved


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--threads", default=f"1,{os.cpu_count()}",
                        help="comma-separated intra-op thread counts to run")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n-mels", type=int, default=80)
    parser.add_argument("--cases", default="all", help="'all' or labels such as '30 s,10 min'")
    args = parser.parse_args()
    device = torch.device(args.device)
    on_cpu = device.type == "cpu"

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    hf = WhisperFeatureExtractor(feature_size=args.n_mels)
    ours = _C.audio.WhisperFeatureExtractor(feature_size=args.n_mels)
    filters = torch.from_numpy(hf.mel_filters).float().to(device)  # [201, n_mels]
    window = torch.hann_window(N_FFT, device=device)
    rng = np.random.default_rng(0)

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, asrfront "
          f"{'%s (%s)' % (asrfront_whisper.__name__, __import__('asrfront')._ext.kernel_isa()) if asrfront_whisper else 'not installed'}, "
          f"device {device}, n_mels {args.n_mels}, min of {args.reps} interleaved reps")
    print(f"/proc/loadavg at start: {open('/proc/loadavg').read().strip()}")
    header = (f"{'input':>7} {'batch':>5} {'thr':>3} | {'fft':>8} {'mel':>8} {'ours':>8} {'hf-torch':>9} "
              f"{'hf-numpy':>9} {'asrfront':>9} | {'Mframe/s':>8} {'ours/floor':>10} "
              f"{'hf-t/ours':>9} {'hf-np/ours':>10} {'asr/ours':>8} | {'max|d| hf-t':>11} {'hf-np':>8} {'asr':>8}")
    print("times in ms")
    print(header)
    wanted = None if args.cases == "all" else {c.strip() for c in args.cases.split(",")}
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        for label, seconds, batch, whole in CASES:
            if wanted and label not in wanted:
                continue
            samples = int(seconds * SR)
            waves_np = [(rng.standard_normal(samples) * 0.1).astype(np.float32) for _ in range(batch)]
            waves = [torch.from_numpy(w).to(device) for w in waves_np]
            stacked = torch.stack(waves)
            window_samples = samples if whole else 480000
            signal_frames = min(samples, window_samples) // HOP  # frames with signal per clip
            # Pre-cut windowed frames and their power for the floor's two ops (not timed).
            frames_in = (torch.randn(batch * signal_frames, N_FFT, device=device) * 0.1) * window
            power_in = torch.fft.rfft(frames_in).abs().square().contiguous()

            def floor_fft():
                return torch.fft.rfft(frames_in)

            def floor_mel():
                return power_in @ filters

            def run_ours():
                if whole:
                    return ours.batch(waves, padding="longest", truncation=False)[0]
                return ours(stacked)

            def run_hf(numpy_path=False):
                kwargs = dict(sampling_rate=SR, return_tensors="np")
                if whole:
                    kwargs.update(padding="longest", truncation=False)
                if not numpy_path:
                    kwargs["device"] = args.device
                inputs = waves_np if batch > 1 else waves_np[0]
                if numpy_path:
                    with hf_numpy_path():
                        return hf(inputs, **kwargs).input_features
                return hf(inputs, **kwargs).input_features

            def run_asrfront():
                if batch == 1:
                    return asrfront_whisper.log_mel(waves_np[0], n_mels=args.n_mels,
                                                    pad_or_trim=not whole)[None]
                out = asrfront_whisper.log_mel_batch(waves_np, n_mels=args.n_mels,
                                                     pad_or_trim=not whole, n_threads=threads)
                return np.stack(out) if isinstance(out, list) else out

            contestants = {"fft": floor_fft, "mel": floor_mel, "ours": run_ours, "hf-torch": run_hf}
            if on_cpu:
                contestants["hf-numpy"] = lambda: run_hf(numpy_path=True)
                if asrfront_whisper is not None and args.n_mels in (80, 128):
                    contestants["asrfront"] = run_asrfront

            # Parity on these inputs (speechlens against each peer's output).
            ref = run_ours().float().cpu().numpy().reshape(batch, args.n_mels, -1)
            diffs = {}
            for name in ("hf-torch", "hf-numpy", "asrfront"):
                if name in contestants:
                    other = np.asarray(contestants[name]()).reshape(ref.shape)
                    diffs[name] = float(np.abs(ref - other).max())

            best = {name: float("inf") for name in contestants}
            for fn in contestants.values():  # warm-up
                fn()
            sync()
            for _ in range(args.reps):
                for name, fn in contestants.items():
                    sync()
                    start = time.perf_counter()
                    fn()
                    sync()
                    best[name] = min(best[name], time.perf_counter() - start)

            best["floor"] = best["fft"] + best["mel"]

            def ms(name):
                return f"{best[name] * 1e3:>8.2f}" if name in best else f"{'-':>8}"

            def ratio(name):
                return f"{best[name] / best['ours']:>.2f}x" if name in best else "-"

            def diff(name):
                return f"{diffs[name]:.1e}" if name in diffs else "-"

            out_frames = batch * (samples // HOP if whole else 3000)
            print(f"{label:>7} {batch:>5} {threads:>3} | {ms('fft')} {ms('mel')} {ms('ours')} {ms('hf-torch'):>9} "
                  f"{ms('hf-numpy'):>9} {ms('asrfront'):>9} | {out_frames / best['ours'] / 1e6:>8.2f} "
                  f"{best['ours'] / best['floor']:>9.2f}x {ratio('hf-torch'):>9} {ratio('hf-numpy'):>10} "
                  f"{ratio('asrfront'):>8} | {diff('hf-torch'):>11} {diff('hf-numpy'):>8} {diff('asrfront'):>8}",
                  flush=True)
    print(f"/proc/loadavg at end:   {open('/proc/loadavg').read().strip()}")
    print("fft: torch.fft.rfft of the windowed frames holding signal (1 s in a 30 s window: 100 "
          "frames per clip); mel: the dense [frames, 201] x [201, n_mels] torch.matmul of their "
          "power; floor = fft + mel; Mframe/s: output frames per second of speechlens")


if __name__ == "__main__":
    main()
