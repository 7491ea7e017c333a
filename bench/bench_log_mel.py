"""Whisper log-mel throughput: speechlens vs HF WhisperFeatureExtractor, same process, same
inputs (30 s and 5 s clips, batch 1 and 8; both padded to 30 s). Prints medians, the speed ratio and the max |difference|.

    PYTHONPATH=python python3 bench/bench_log_mel.py [--reps 15] [--threads 1]
"""
import argparse

import numpy as np
import torch

from speechlens import _C
from timing import median_seconds

import transformers
from transformers import WhisperFeatureExtractor

transformers.logging.set_verbosity_error()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads for both sides (default: torch's)")
    parser.add_argument("--n-mels", type=int, default=80)
    parser.add_argument("--seconds", default="30,5",
                        help="clip lengths to time (comma-separated; Whisper pads to 30 s)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    hf = WhisperFeatureExtractor(feature_size=args.n_mels)
    ours = _C.audio.WhisperFeatureExtractor(feature_size=args.n_mels)
    rng = np.random.default_rng(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), n_mels={args.n_mels}, "
          f"{args.reps} reps, medians")
    print(f"{'clip s':>6} {'batch':>5} {'HF ms':>9} {'ours ms':>9} {'ratio':>7} {'max|diff|':>10}")
    for seconds, batch in [(float(s), b) for s in args.seconds.split(",") for b in (1, 8)]:
        samples = int(seconds * 16000)
        waves = [(rng.standard_normal(samples) * 0.1).astype(np.float32) for _ in range(batch)]
        tensors = [torch.from_numpy(w) for w in waves]
        stacked = torch.stack(tensors)

        def run_hf():
            return hf(waves if batch > 1 else waves[0], sampling_rate=16000,
                      return_tensors="pt").input_features

        def run_ours():
            return ours(stacked if batch > 1 else tensors[0])

        diff = (run_ours().reshape(batch, args.n_mels, -1) - run_hf()).abs().max().item()
        t_hf = median_seconds(run_hf, args.reps)
        t_ours = median_seconds(run_ours, args.reps)
        print(f"{seconds:>6g} {batch:>5} {t_hf * 1e3:>9.2f} {t_ours * 1e3:>9.2f} {t_hf / t_ours:>6.2f}x "
              f"{diff:>10.2e}")


if __name__ == "__main__":
    main()
