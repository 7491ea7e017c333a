"""Forward time of HookedWhisper against HF transformers on the same weights and inputs.

Shapes: whisper-tiny and whisper-base (random weights, real dimensions, full 30 s input),
batch 1 and 8. Reported per configuration, as medians over repetitions:
  hf_eager      HF WhisperForConditionalGeneration, attn_implementation="eager"
  hf_sdpa       the same with PyTorch SDPA attention
  sl            SpeechLens, no hooks attached
  sl_cache_all  SpeechLens caching every hook point (forces the explicit attention path)
  sl_cache_resid  caching every point but attention scores / patterns / z (stays on SDPA)
and the ratios sl / hf_eager (goal <= 0.9), sl_cache_all / sl (goal <= 1.10),
sl_cache_all / hf_eager (caching everything against the HF path that can return attentions)
and sl_cache_resid / sl.

    python bench/bench_whisper.py [--reps 5] [--threads 2] [--json out.json]
"""
import argparse
import json
import tempfile

import torch

from timing import median_seconds

SHAPES = {
    "tiny": dict(d_model=384, encoder_layers=4, decoder_layers=4, encoder_attention_heads=6,
                 decoder_attention_heads=6, encoder_ffn_dim=1536, decoder_ffn_dim=1536),
    "base": dict(d_model=512, encoder_layers=6, decoder_layers=6, encoder_attention_heads=8,
                 decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=2048),
}



def main():
    import transformers

    import speechlens as sl

    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shapes", default="tiny,base")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for shape in args.shapes.split(","):
        with tempfile.TemporaryDirectory() as folder:
            torch.manual_seed(0)
            config = transformers.WhisperConfig(vocab_size=51865, num_mel_bins=80, **SHAPES[shape])
            transformers.WhisperForConditionalGeneration(config).eval().save_pretrained(folder)
            hf_eager = transformers.WhisperForConditionalGeneration.from_pretrained(
                folder, attn_implementation="eager").eval()
            hf_sdpa = transformers.WhisperForConditionalGeneration.from_pretrained(
                folder, attn_implementation="sdpa").eval()
            model = sl.load(folder)
            for batch in map(int, args.batches.split(",")):
                mel = torch.randn(batch, 80, 3000)
                tokens = torch.randint(0, 50000, (batch, args.tokens))
                with torch.inference_mode():
                    ref = hf_eager(input_features=mel, decoder_input_ids=tokens).logits
                    ours = model(mel, tokens)
                    parity = (ref - ours).abs().max().item()
                    row = {"shape": shape, "batch": batch, "max_abs_diff": parity}
                    row["hf_eager"] = median_seconds(lambda: hf_eager(input_features=mel, decoder_input_ids=tokens),
                                                  args.reps)
                    row["hf_sdpa"] = median_seconds(lambda: hf_sdpa(input_features=mel, decoder_input_ids=tokens),
                                                 args.reps)
                    row["sl"] = median_seconds(lambda: model(mel, tokens), args.reps)
                    row["sl_cache_all"] = median_seconds(lambda: model.run_with_cache(mel, tokens), args.reps)
                    no_attn = [n for n in model.hook_names()
                               if not n.endswith(("hook_pattern", "hook_attn_scores", "hook_z"))]
                    row["sl_cache_resid"] = median_seconds(
                        lambda: model.run_with_cache(mel, tokens, names_filter=no_attn), args.reps)
                row["sl_over_hf_eager"] = row["sl"] / row["hf_eager"]
                row["sl_over_hf_sdpa"] = row["sl"] / row["hf_sdpa"]
                row["cache_all_over_sl"] = row["sl_cache_all"] / row["sl"]
                row["cache_all_over_hf_eager"] = row["sl_cache_all"] / row["hf_eager"]
                row["cache_resid_over_sl"] = row["sl_cache_resid"] / row["sl"]
                rows.append(row)
                print(f"{shape:5s} b={batch}  hf_eager {row['hf_eager']*1e3:8.1f} ms  hf_sdpa {row['hf_sdpa']*1e3:8.1f} ms"
                      f"  sl {row['sl']*1e3:8.1f} ms  sl_cache_all {row['sl_cache_all']*1e3:8.1f} ms"
                      f"  | sl/hf_eager {row['sl_over_hf_eager']:.2f}  sl/hf_sdpa {row['sl_over_hf_sdpa']:.2f}"
                      f"  cache_all/sl {row['cache_all_over_sl']:.2f}  cache_all/hf_eager {row['cache_all_over_hf_eager']:.2f}"
                      f"  cache_resid/sl {row['cache_resid_over_sl']:.2f}  (max|diff| {parity:.1e})", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
