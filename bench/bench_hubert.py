"""HookedHubert forward vs HF HubertModel (eager attention), same process, same weights: a
randomly initialised hubert-base-shaped model (7 convs of 512, 12 layers, d_model 768, 12 heads,
d_mlp 3072, post-LN), clips of --seconds at 16 kHz, batch 1 and 8, no hooks attached, inference
mode. Prints medians, the ratio HF / SpeechLens and the max |difference| of the last hidden state.

    PYTHONPATH=python python3 bench/bench_hubert.py [--reps 5] [--seconds 5] [--threads N]
"""
import argparse
import sys
import tempfile

import torch
import transformers
from timing import median_seconds

transformers.logging.set_verbosity_error()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import speechlens as sl

    torch.manual_seed(0)
    config = transformers.HubertConfig(attn_implementation="eager")  # hubert-base layout
    hf = transformers.HubertModel(config).eval()
    with tempfile.TemporaryDirectory() as folder:
        hf.save_pretrained(folder)
        model = sl.load(folder)
    samples = int(args.seconds * 16000)
    print(f"hubert-base shape, {args.seconds:g} s clips, torch threads {torch.get_num_threads()}, "
          f"transformers {transformers.__version__}")
    print(f"{'batch':>5} {'HF eager (s)':>13} {'SpeechLens (s)':>15} {'HF / SL':>8} {'max|diff|':>10}")
    for batch in (int(b) for b in args.batches.split(",")):
        wave = torch.randn(batch, samples)
        with torch.inference_mode():
            ref = hf(wave).last_hidden_state
            ours = model(wave)
            hf_time = median_seconds(lambda: hf(wave), args.reps)
            sl_time = median_seconds(lambda: model(wave), args.reps)
        diff = (ref - ours).abs().max().item()
        print(f"{batch:>5} {hf_time:>13.3f} {sl_time:>15.3f} {hf_time / sl_time:>8.2f} {diff:>10.2e}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
