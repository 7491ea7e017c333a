"""Activation-patching sweep: speechlens (C++, batched forwards) vs the plain HF loop (one
WhisperForConditionalGeneration forward per configuration with PyTorch forward hooks), same
process, same random whisper-tiny-shaped weights. Prints both times, the ratio and the largest
difference between the two result tables.

    PYTHONPATH=python python3 bench/bench_patching.py [--frames 1500] [--windows 50] [--layers 4]
        [--reference-configs N] [--max-batch 16] [--threads T]

--reference-configs runs the HF loop on only the first N configurations (the numbers are
compared there and the HF time is scaled to the whole sweep per configuration) when the full
loop would take too long on a small machine.
"""
import argparse
import pathlib
import sys
import tempfile
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "python"))

import speechlens as sl  # noqa: E402
from analysis_helpers import hf_patching_loop, save_tiny_whisper  # noqa: E402

import transformers  # noqa: E402

transformers.logging.set_verbosity_error()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=1500, help="encoder frames (mel frames / 2)")
    ap.add_argument("--windows", type=int, default=50)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=1000)
    ap.add_argument("--reference-configs", type=int, default=0, help="0: the whole sweep")
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    folder = pathlib.Path(tempfile.mkdtemp(prefix="bench_patching_"))
    hf = save_tiny_whisper(folder, vocab_size=args.vocab, num_mel_bins=80, encoder_layers=args.layers,
                           decoder_layers=args.layers, encoder_attention_heads=6, decoder_attention_heads=6,
                           d_model=384, encoder_ffn_dim=1536, decoder_ffn_dim=1536,
                           max_source_positions=args.frames, max_target_positions=64)
    model = sl.load(folder)
    g = torch.Generator().manual_seed(0)
    clean = torch.randn(1, 80, 2 * args.frames, generator=g)
    corrupted = clean.clone()
    corrupted[:, :, : 2 * args.frames // 3] = torch.randn(1, 80, 2 * args.frames // 3, generator=g)
    tokens = torch.tensor([[1, 17, 400, 23, 99]])
    window = -(-args.frames // args.windows)

    def metric(logits):
        return logits[:, -1, 3] - logits[:, -1, 4]

    hooks = "encoder.blocks.*.hook_resid_pre"
    with torch.inference_mode(False):
        start = time.perf_counter()
        ours = sl.patching.activation_patching(model, (clean, tokens), (corrupted, tokens), hooks=hooks,
                                               metric=metric, window=window, max_batch=args.max_batch,
                                               progress=False)
        ours_s = time.perf_counter() - start
    total = ours.values.numel()

    names = ours.hook_names
    n_ref = args.reference_configs or total
    per_hook = ours.values.shape[1]
    ref_names = names[: -(-n_ref // per_hook)]
    start = time.perf_counter()
    reference = hf_patching_loop(hf, (clean, tokens), (corrupted, tokens), ref_names, metric, "position", window,
                                 limit=n_ref)
    ref_s = time.perf_counter() - start
    ref_configs = int((~reference.isnan()).sum())
    ref_total_s = ref_s / ref_configs * total
    compared = ours.values[: reference.shape[0]]
    mask = ~reference.isnan()
    diff = (compared[mask] - reference[mask]).abs().max().item()

    print(f"model: whisper-tiny-shaped random, {args.layers} layers, d_model 384, 6 heads, vocab {args.vocab}, "
          f"{args.frames} encoder frames; torch threads {torch.get_num_threads()}")
    print(f"sweep: {hooks}, {len(names)} hooks x {per_hook} windows of {window} frames = {total} configurations")
    print(f"speechlens: {ours_s:.2f} s ({ours.forwards} forwards, max_batch {args.max_batch}) "
          f"= {total / ours_s:.2f} configs/s")
    print(f"HF hooks loop: {ref_s:.2f} s for {ref_configs} configurations = {ref_configs / ref_s:.2f} configs/s"
          + ("" if ref_configs == total else f" (whole sweep extrapolated: {ref_total_s:.1f} s)"))
    print(f"ratio (HF time / speechlens time, whole sweep): {ref_total_s / ours_s:.2f}x")
    print(f"max |difference| over {ref_configs} compared configurations: {diff:.2e}")


if __name__ == "__main__":
    main()
