#!/usr/bin/env python3
"""Word error rate of the tiny HuBERT CTC model with Hugging Face transformers (greedy CTC).

    python3 scripts/eval_tiny_hubert.py [--model python/speechlens/embedded/tiny-hubert-digits-commands] [--n 60]

Regenerates, deterministically, two sets with espeak-ng (see scripts/tiny_hubert_data.py):
  held-out      voices never used in training, at speaking rates outside the training range
  train-voices  new sentences from the training voices and rates
both with a seeded 30 dB white-noise floor, and prints the WER of each.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import tiny_hubert_data as data  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


def evaluate(model_dir: pathlib.Path, n: int, show: int) -> dict[str, float]:
    import torch
    from transformers import HubertForCTC, Wav2Vec2Processor

    model = HubertForCTC.from_pretrained(model_dir, dtype=torch.float32)
    processor = Wav2Vec2Processor.from_pretrained(model_dir)
    results = {}
    for name, make_specs, seed in (
        ("heldout", data.heldout_specs, data.HELDOUT_SEED),
        ("train_voices", data.train_specs, data.TRAIN_CHECK_SEED),
    ):
        specs = make_specs(n, seed=seed)
        waves = data.heldout_waves(specs, seed=seed)
        hyps = data.transcribe_greedy(model, processor, waves)
        results[f"{name}_wer"] = data.word_error_rate([s.text for s in specs], hyps)
        results[f"{name}_words"] = sum(len(s.text.split()) for s in specs)
        for spec, hyp in list(zip(specs, hyps))[:show]:
            mark = " " if hyp == spec.text else "x"
            print(f"{mark} {name:12s} {spec.voice:20s} {spec.speed:3d} wpm  ref {spec.text!r:28s} hyp {hyp!r}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=pathlib.Path, default=REPO_ROOT / "python" / "speechlens" / "embedded" / "tiny-hubert-digits-commands")
    parser.add_argument("--n", type=int, default=60, help="utterances per set")
    parser.add_argument("--show", type=int, default=10, help="example transcripts to print per set")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if not data.espeak_available():
        sys.exit("espeak-ng is not installed (Debian: apt-get install espeak-ng)")

    import torch

    torch.set_num_threads(args.threads)
    started = time.time()
    results = evaluate(args.model, args.n, args.show)
    results["seconds"] = round(time.time() - started, 1)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
