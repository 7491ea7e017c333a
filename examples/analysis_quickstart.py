"""SpeechLens analysis quickstart: patching, lenses, probes, neuron statistics, CKA, plots.

    PYTHONPATH=python python3 examples/analysis_quickstart.py [checkpoint-folder]

Without a folder it builds a tiny random Whisper with transformers so the script runs offline;
with e.g. a local openai/whisper-tiny snapshot the same calls work on the real model.
"""
import pathlib
import sys
import tempfile

import torch

import speechlens as sl


def load_model():
    if len(sys.argv) > 1:
        return sl.load(sys.argv[1])
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig(vocab_size=200, num_mel_bins=80, encoder_layers=2, decoder_layers=2,
                           encoder_attention_heads=4, decoder_attention_heads=4, d_model=64,
                           encoder_ffn_dim=128, decoder_ffn_dim=128, max_source_positions=100,
                           max_target_positions=32, decoder_start_token_id=1, bos_token_id=1, eos_token_id=2,
                           pad_token_id=0)
    folder = pathlib.Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    WhisperForConditionalGeneration(config).save_pretrained(folder)
    return sl.load(folder)


model = load_model()
frames = 2 * model.cfg.n_ctx_encoder
clean = torch.randn(1, model.cfg.n_mels, frames)
corrupted = clean.clone()
corrupted[..., frames // 3: 2 * frames // 3] = torch.randn_like(corrupted[..., frames // 3: 2 * frames // 3])
tokens = torch.tensor([model.prompt() + [17, 40]])

# 1. Which encoder layer x time window carries what the decoder's last prediction needs?
top2 = model(clean, tokens)[0, -1].topk(2).indices.tolist()
metric = sl.patching.logit_diff_metric(-1, *top2)
result = sl.patching.activation_patching(model, (clean, tokens), (corrupted, tokens),
                                         hooks="encoder.blocks.*.hook_resid_pre", metric=metric,
                                         window=max(1, frames // 2 // 25), normalize=True)
print("patching:", result.values.shape, "rows", result.hook_names)
sl.plot.save(sl.plot.patching_heatmap(result, spectrogram=clean[0]), "quickstart_patching.png")

# 2. The same sweep from one forward and one backward.
approx = sl.patching.attribution_patching(model, (clean, tokens), (corrupted, tokens),
                                          hooks="encoder.blocks.*.hook_resid_pre", metric=metric,
                                          window=max(1, frames // 2 // 25), normalize=True)
print("attribution vs activation corr:",
      torch.corrcoef(torch.stack([approx.values.flatten(), result.values.flatten()]))[0, 1].item())

# 3. Lenses.
lens = sl.lens.logit_lens(model, clean, tokens)
print("logit lens top-1 per layer at the last position:", lens.top_tokens(1)[:, 0, -1, 0].tolist())
print("encoder lens transcripts:", sl.lens.encoder_lens(model, clean, max_new_tokens=5).tokens)

# 4. Probes, neuron statistics and CKA over a small labelled set.
labels = torch.arange(60) % 2
mels = torch.randn(60, clean.shape[1], frames) + labels[:, None, None] * 0.5
_, cache = model.run_with_cache(mels, names_filter="encoder.blocks.*.hook_resid_post")
per_layer = [sl.probes.pool_frames(cache["resid_post", i]) for i in range(model.cfg.n_layers)]
for i, r in enumerate(sl.probes.probe_layers(per_layer, labels)):
    print(f"layer {i}: accuracy {r.test_score:.2f} (shuffled control {r.control_score:.2f})")
stats = sl.stats.neuron_stats(model, [((mels, None), labels)], "encoder.blocks.0.mlp.hook_post", n_classes=2)
print("most selective neurons for class 1:", stats.dprime()[1].topk(5).indices.tolist())
print("CKA between encoder layers:\n", sl.stats.cka_matrix(per_layer))
