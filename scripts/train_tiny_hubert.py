#!/usr/bin/env python3
"""Trains the tiny HuBERT CTC model that SpeechLens ships as an embedded default.

    python3 scripts/train_tiny_hubert.py            # writes python/speechlens/embedded/tiny-hubert-digits-commands/

The model is a Hugging Face HubertForCTC (the wav2vec2/HuBERT-base layout: 7-layer conv
front end with total stride 320, group norm on the first conv, post-norm transformer) made
small enough to commit, trained from scratch with character CTC on a corpus synthesized by
espeak-ng: digit sequences and ten command words, spoken by ten espeak-ng voices at varied
rates and pitches, augmented on the fly with speed perturbation, gain, silence padding and
additive noise. The held-out set (different voices, speaking rates outside the training
range) is described in scripts/tiny_hubert_data.py.

Run time on the 2-core development machine (torch CPU, 1 thread, machine shared with other
jobs at load ~13): corpus synthesis 95 s, training 1,609 s (27 min) for the default 1,800
steps; details and the measured WER are in python/speechlens/embedded/tiny-hubert-digits-commands/README.md.
The synthesized corpus is cached under --cache-dir, so re-runs skip the synthesis.
Seeds are fixed (Python, NumPy, torch); with the same torch build and thread count a re-run
reproduces the same weights (checked: two 25-step runs wrote bit-identical safetensors).
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from scipy.signal import resample_poly

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import tiny_hubert_data as data  # noqa: E402

from transformers import (  # noqa: E402
    HubertConfig,
    HubertForCTC,
    Wav2Vec2CTCTokenizer,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Processor,
)

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "python" / "speechlens" / "embedded" / "tiny-hubert-digits-commands"

# Speed perturbation as exact resampling ratios (up, down): the clip becomes down/up times
# faster, which also shifts pitch, like `sox speed`.
SPEED_PERTURBATIONS = ((1, 1), (10, 9), (20, 19), (20, 21), (10, 11), (5, 6), (6, 5))


def tiny_hubert_config(vocab_size: int) -> HubertConfig:
    return HubertConfig(
        vocab_size=vocab_size,
        hidden_size=144,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=384,
        hidden_act="gelu",
        conv_dim=(32, 48, 64, 96, 96, 128, 128),
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        conv_bias=False,
        feat_extract_norm="group",
        feat_extract_activation="gelu",
        do_stable_layer_norm=False,
        feat_proj_layer_norm=True,
        num_conv_pos_embeddings=32,
        num_conv_pos_embedding_groups=8,
        hidden_dropout=0.1,
        attention_dropout=0.1,
        activation_dropout=0.0,
        feat_proj_dropout=0.0,
        final_dropout=0.0,
        layerdrop=0.0,
        apply_spec_augment=False,
        mask_time_prob=0.0,
        ctc_loss_reduction="mean",
        ctc_zero_infinity=True,
        pad_token_id=0,
    )


def make_processor(directory: pathlib.Path) -> Wav2Vec2Processor:
    vocab_file = directory / "vocab.json"
    vocab_file.write_text(json.dumps(data.build_vocab(), indent=2) + "\n")
    tokenizer = Wav2Vec2CTCTokenizer(
        str(vocab_file),
        unk_token=data.UNK_TOKEN,
        pad_token=data.PAD_TOKEN,
        word_delimiter_token=data.WORD_DELIMITER,
        bos_token=None,
        eos_token=None,
    )
    feature_extractor = Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=data.SAMPLE_RATE,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    )
    return Wav2Vec2Processor(feature_extractor=feature_extractor, tokenizer=tokenizer)


def save_checkpoint(model: HubertForCTC, processor: Wav2Vec2Processor, directory: pathlib.Path) -> None:
    """Writes the classic per-component files (preprocessor_config.json, tokenizer files,
    special_tokens_map.json) rather than transformers 5's combined processor_config.json, so
    that older transformers and non-HF loaders (SpeechLens) find what they expect."""
    model.save_pretrained(directory)
    processor.feature_extractor.save_pretrained(directory)
    processor.tokenizer.save_pretrained(directory)
    special_tokens = {"pad_token": data.PAD_TOKEN, "unk_token": data.UNK_TOKEN}
    (directory / "special_tokens_map.json").write_text(json.dumps(special_tokens, indent=2) + "\n")
    (directory / "processor_config.json").unlink(missing_ok=True)


def augment(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    up, down = SPEED_PERTURBATIONS[rng.integers(len(SPEED_PERTURBATIONS))]
    if up != down:
        wave = resample_poly(wave, up, down).astype(np.float32)
    pad_before, pad_after = rng.integers(0, data.SAMPLE_RATE // 5, size=2)
    wave = np.pad(wave, (pad_before, pad_after))
    wave = wave * rng.uniform(0.3, 1.0)
    if rng.random() < 0.85:
        wave = data.add_noise(wave, rng.uniform(8.0, 40.0), rng)
    return wave.astype(np.float32)


def length_bucketed_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Batches of similar length (less padding, which the group-normed first conv sees),
    in random order."""
    order = rng.permutation(len(lengths))
    pool = batch_size * 32
    batches = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    parser.add_argument("--cache-dir", type=pathlib.Path, default=pathlib.Path(tempfile.gettempdir()) / "speechlens-tiny-hubert")
    parser.add_argument("--n-train", type=int, default=3000, help="synthesized training utterances")
    parser.add_argument("--n-heldout", type=int, default=60)
    parser.add_argument("--steps", type=int, default=1800)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--eval-every", type=int, default=300)
    # One thread: on a shared 2-core machine, two torch threads ran 4x slower than one.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if not data.espeak_available():
        sys.exit("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    started = time.time()

    specs = data.train_specs(args.n_train, seed=args.seed)
    # espeak-ng runs in subprocesses, so threads are enough to overlap them.
    chunks = [specs[i : i + 500] for i in range(0, len(specs), 500)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        waves = [w for part in pool.map(lambda c: data.synthesize_all(c, args.cache_dir), chunks) for w in part]
    heldout = data.heldout_specs(args.n_heldout, seed=data.HELDOUT_SEED)
    heldout_audio = data.heldout_waves(heldout, seed=data.HELDOUT_SEED, cache_dir=args.cache_dir)
    train_check = data.train_specs(args.n_heldout, seed=data.TRAIN_CHECK_SEED)
    train_check_audio = data.heldout_waves(train_check, seed=data.TRAIN_CHECK_SEED, cache_dir=args.cache_dir)
    hours = sum(len(w) for w in waves) / data.SAMPLE_RATE / 3600
    print(f"corpus: {len(waves)} utterances, {hours:.2f} h, ready in {time.time() - started:.0f} s", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    processor = make_processor(args.out)
    labels = [processor.tokenizer(spec.text).input_ids for spec in specs]
    config = tiny_hubert_config(len(processor.tokenizer))
    model = HubertForCTC(config)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f} M parameters", flush=True)

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay, betas=(0.9, 0.98))

    def lr_factor(step: int) -> float:
        if step < args.warmup:
            return (step + 1) / args.warmup
        progress = (step - args.warmup) / max(1, args.steps - args.warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    rng = np.random.default_rng(args.seed)
    lengths = np.array([len(w) for w in waves])
    batches: list[np.ndarray] = []
    train_started = time.time()
    running_loss = 0.0
    for step in range(args.steps):
        if not batches:
            batches = length_bucketed_batches(lengths, args.batch_size, rng)
        batch = batches.pop()
        model.train()
        inputs = processor.feature_extractor(
            [augment(waves[i], rng) for i in batch],
            sampling_rate=data.SAMPLE_RATE,
            padding=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        label_batch = processor.tokenizer.pad({"input_ids": [labels[i] for i in batch]}, return_tensors="pt")
        target = label_batch.input_ids.masked_fill(label_batch.attention_mask == 0, -100)
        loss = model(inputs.input_values, attention_mask=inputs.attention_mask, labels=target).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        running_loss += loss.item()
        if (step + 1) % 50 == 0:
            print(
                f"step {step + 1}/{args.steps} loss {running_loss / 50:.3f} "
                f"lr {scheduler.get_last_lr()[0]:.2e} {time.time() - train_started:.0f} s",
                flush=True,
            )
            running_loss = 0.0
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            wer = data.word_error_rate([s.text for s in heldout], data.transcribe_greedy(model, processor, heldout_audio))
            print(f"step {step + 1}: held-out WER {wer:.3f}", flush=True)

    train_seconds = time.time() - train_started
    hyps = data.transcribe_greedy(model, processor, heldout_audio)
    heldout_wer = data.word_error_rate([s.text for s in heldout], hyps)
    train_wer = data.word_error_rate([s.text for s in train_check], data.transcribe_greedy(model, processor, train_check_audio))
    for spec, hyp in list(zip(heldout, hyps))[:10]:
        print(f"  [{spec.voice} {spec.speed} wpm] ref: {spec.text!r} hyp: {hyp!r}")

    save_checkpoint(model, processor, args.out)
    summary = {
        "parameters": n_params,
        "train_utterances": len(waves),
        "train_hours": round(hours, 3),
        "steps": args.steps,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "train_seconds": round(train_seconds),
        "total_seconds": round(time.time() - started),
        "heldout_wer": round(heldout_wer, 4),
        "train_voices_wer": round(train_wer, 4),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
