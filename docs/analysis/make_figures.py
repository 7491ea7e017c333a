"""Regenerates the pictures in docs/analysis/img/ from a small random Whisper and synthetic
log-mel "utterances" (a band of energy at a class-specific pitch over noise).

    PYTHONPATH=python python3 docs/analysis/make_figures.py
"""
import pathlib
import sys
import tempfile

import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "python"))

import speechlens as sl  # noqa: E402
from analysis_helpers import save_tiny_whisper  # noqa: E402

IMG = ROOT / "docs" / "analysis" / "img"
N_MELS, FRAMES = 40, 200  # 100 encoder positions


def utterance(cls: int, g: torch.Generator, onset: int = 60, length: int = 80) -> torch.Tensor:
    mel = 0.3 * torch.randn(N_MELS, FRAMES, generator=g)
    band = 5 + 12 * cls
    mel[band:band + 6, onset:onset + length] += 2.5
    return mel


def sweep(cls: int, g: torch.Generator) -> torch.Tensor:
    """Probe data: a band that rises (0), falls (1) or stays flat (2) over time, from a random
    pitch and onset. Every class covers the same pitches, so the frame-averaged spectrum alone
    does not tell them apart: the direction is a temporal feature."""
    mel = 0.3 * torch.randn(N_MELS, FRAMES, generator=g)
    onset = int(torch.randint(0, 80, (1,), generator=g))
    start = int(torch.randint(8, 28, (1,), generator=g))
    slope = (0.1, -0.1, 0.0)[cls]
    for t in range(100):
        band = int(round(start + slope * (t - 50)))
        mel[band:band + 4, onset + t] += 2.5
    return mel


def main():
    torch.manual_seed(0)
    folder = pathlib.Path(tempfile.mkdtemp(prefix="sl_docs_"))
    save_tiny_whisper(folder, seed=0, vocab_size=200, num_mel_bins=N_MELS, encoder_layers=4, decoder_layers=2,
                      encoder_attention_heads=4, decoder_attention_heads=4, d_model=64, encoder_ffn_dim=128,
                      decoder_ffn_dim=128, max_source_positions=FRAMES // 2, max_target_positions=16)
    model = sl.load(folder)
    g = torch.Generator().manual_seed(1)
    clean = utterance(0, g)
    corrupted = clean.clone()
    corrupted[:, 60:140] = 0.3 * torch.randn(N_MELS, 80, generator=g)
    tokens = torch.tensor([[1, 17, 40, 23, 99]])
    with torch.no_grad():
        logits = model(clean, tokens)
    a, b = logits[0, -1].topk(2).indices.tolist()

    def metric(lg):
        return lg[:, -1, a] - lg[:, -1, b]

    # Activation and attribution patching over encoder layers x position windows.
    kwargs = dict(hooks="encoder.blocks.*.hook_resid_pre", metric=metric, window=5, normalize=True, progress=False)
    act = sl.patching.activation_patching(model, (clean, tokens), (corrupted, tokens), **kwargs)
    attr = sl.patching.attribution_patching(model, (clean, tokens), (corrupted, tokens), **kwargs)
    sl.plot.save(sl.plot.patching_heatmap(act, spectrogram=clean), IMG / "activation_patching.png")
    sl.plot.save(sl.plot.patching_heatmap(attr, spectrogram=clean), IMG / "attribution_patching.png")
    corr = torch.corrcoef(torch.stack([act.values.flatten(), attr.values.flatten()]))[0, 1].item()
    heads = sl.patching.activation_patching(model, (clean, tokens), (corrupted, tokens),
                                            hooks="encoder.blocks.*.attn.hook_z", metric=metric, sweep="head",
                                            normalize=True, progress=False)
    sl.plot.save(sl.plot.patching_heatmap(heads), IMG / "head_patching.png")
    print(f"patching: clean {act.clean_metric:.3f}, corrupted {act.corrupted_metric:.3f}, "
          f"{act.values.numel()} configs in {act.forwards} forwards; attribution vs activation corr {corr:.3f}")

    # Attention over the spectrogram and the decoder's cross-attention alignment.
    _, cache = model.run_with_cache(clean, tokens, names_filter=["encoder.blocks.2.attn.hook_pattern",
                                                                 "decoder.blocks.1.cross_attn.hook_pattern"])
    pattern = cache["encoder.blocks.2.attn.hook_pattern"][0, 0]
    sl.plot.save(sl.plot.attention_pattern(pattern, spectrogram=clean, query=50,
                                           title="encoder.blocks.2 head 0"), IMG / "attention_pattern.png")
    cross = cache["decoder.blocks.1.cross_attn.hook_pattern"][0].mean(0)
    sl.plot.save(sl.plot.cross_attention_alignment(cross, [str(t) for t in tokens[0].tolist()], spectrogram=clean,
                                                   title="decoder.blocks.1 cross-attention (head mean)"),
                 IMG / "cross_attention.png")

    # Logit lens table.
    lens = sl.lens.logit_lens(model, clean, tokens)
    sl.plot.save(sl.plot.lens_table(lens, token_strings=lambda i: f"#{i}"), IMG / "logit_lens.png")
    enc = sl.lens.encoder_lens(model, clean, tokens=tokens, max_new_tokens=8)
    print("encoder lens greedy tokens per layer:", [t[0] for t in enc.tokens])
    # The same table for the encoder lens: rows are encoder layers feeding the full decoder.
    enc_table = sl.lens.LogitLensResult(enc.logits, [f"encoder.blocks.{i}.hook_resid_post" for i in enc.layers])
    sl.plot.save(sl.plot.lens_table(enc_table, token_strings=lambda i: f"#{i}", title="encoder lens"),
                 IMG / "encoder_lens.png")

    # Probes: which encoder layers linearly encode whether the band rises, falls or stays flat?
    labels = torch.arange(600) % 3
    mels = torch.stack([sweep(int(c), g) for c in labels])
    names = [f"encoder.blocks.{i}.hook_resid_post" for i in range(4)]
    pooled = {n: [] for n in ["encoder.blocks.0.hook_resid_pre"] + names}
    for start in range(0, len(mels), 40):
        _, c = model.run_with_cache(mels[start:start + 40], names_filter=list(pooled))
        for n in pooled:
            pooled[n].append(sl.probes.pool_frames(c[n]))
    per_layer = [torch.cat(v) for v in pooled.values()]
    probes = sl.probes.probe_layers(per_layer, labels, progress=False)
    sl.plot.save(sl.plot.probe_curves({"rising / falling / flat": probes}, labels=["embed", "L0", "L1", "L2", "L3"]),
                 IMG / "probes.png")
    print("probe test accuracy:", [round(r.test_score, 3) for r in probes],
          "control:", [round(r.control_score, 3) for r in probes])

    # Neuron statistics and CKA on the same data.
    batches = [((mels[s:s + 40], None), labels[s:s + 40]) for s in range(0, len(mels), 40)]
    stats = sl.stats.neuron_stats(model, batches, "encoder.blocks.1.mlp.hook_post", n_classes=3, progress=False)
    sl.plot.save(sl.plot.selectivity_histogram(stats.dprime(), ["rising", "falling", "flat"],
                                               title="d' per neuron, encoder.blocks.1.mlp.hook_post", xlabel="d' (class vs rest)"),
                 IMG / "neuron_stats.png")
    cka = sl.stats.cka_matrix(per_layer)
    sl.plot.save(sl.plot.cka_heatmap(cka, ["embed", "L0", "L1", "L2", "L3"], ["embed", "L0", "L1", "L2", "L3"]),
                 IMG / "cka.png")
    print("CKA:\n", cka.numpy().round(3))


if __name__ == "__main__":
    main()
