"""``speechlens`` command line. ``speechlens demo`` is what ``make demo`` runs: a first look at
SpeechLens on real Whisper weights and the embedded tiny HuBERT, offline, written as a report.

    python -m speechlens.cli demo [--out demo-report]
"""
from __future__ import annotations

import argparse
import html
import json
import pathlib
import shutil
import subprocess
import sys
import time

import torch

CLEAN, CORRUPTED = "the cat sat on the mat", "the cat sat on the hat"
PREFIX, RIGHT, WRONG = " The cat sat on the", " mat", " hat"
HUBERT_CLEAN, HUBERT_CORRUPTED = "three one four", "three one five"
FRAMES_PER_WINDOW = 5            # encoder frames are 20 ms: windows of 100 ms


def _step(message: str, start: list[float]) -> None:
    print(f"[demo {time.perf_counter() - start[0]:5.1f}s] {message}", flush=True)


def speak(text: str, path: pathlib.Path, voice: str = "en-gb-x-rp", speed: int = 120) -> pathlib.Path:
    if shutil.which("espeak-ng") is None:
        raise SystemExit("the demo synthesizes speech with espeak-ng: apt-get install espeak-ng (make deps does)")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)
    return path


def _speech_frames(*waves: torch.Tensor) -> int:
    """Encoder frames (20 ms each) that hold the longer clip, plus a little context."""
    return int(max(w.numel() for w in waves) / 320) + 5


def whisper_demo(out: pathlib.Path, start: list[float]) -> dict:
    import speechlens as sl

    _step("loading whisper-tiny.en (embedded, converted once into the cache)", start)
    model = sl.load("whisper-tiny.en")
    clean_wave = sl.load_audio(speak(CLEAN, out / "whisper_clean.wav"))
    corrupted_wave = sl.load_audio(speak(CORRUPTED, out / "whisper_corrupted.wav"))
    _step("transcribing both clips", start)
    transcripts = {"clean": model.transcribe(clean_wave), "corrupted": model.transcribe(corrupted_wave)}
    print(f"    clean:     {transcripts['clean']!r}\n    corrupted: {transcripts['corrupted']!r}")

    clean, corrupted = model.features(clean_wave), model.features(corrupted_wave)
    tokens = model.to_tokens(PREFIX)
    right, wrong = model.tokenizer.encode(RIGHT)[0], model.tokenizer.encode(WRONG)[0]
    metric = sl.patching.logit_diff_metric(-1, right, wrong)

    _step("caching activations of the clean run", start)
    logits, cache = model.run_with_cache(clean, tokens, names_filter=["encoder.blocks.*.hook_resid_post",
                                                                      "decoder.blocks.*.hook_resid_post"])
    clean_diff = float(metric(logits))
    corrupted_diff = float(metric(model(corrupted, tokens)))

    frames = _speech_frames(clean_wave, corrupted_wave)
    _step(f"activation patching: 4 encoder layers x {frames} frames in {FRAMES_PER_WINDOW}-frame windows", start)
    sweep = sl.patching.activation_patching(model, (clean, tokens), (corrupted, tokens),
                                            hooks="encoder.blocks.*.hook_resid_pre", metric=metric,
                                            window=FRAMES_PER_WINDOW, positions=(0, frames), normalize=True,
                                            max_batch=16)
    fig = sl.plot.patching_heatmap(sweep, spectrogram=clean[:, : 2 * frames],
                                   title=f"logit({RIGHT.strip()}) - logit({WRONG.strip()}) recovered by patching "
                                         "clean encoder activations into the corrupted run")
    sl.plot.save(fig, out / "whisper_patching.png")
    values = sweep.values.float()
    best_layer, best_slot = divmod(int(values.nan_to_num(-1e9).argmax()), values.shape[1])

    _step("decoder logit lens", start)
    full = model.to_tokens(PREFIX + RIGHT)
    lens = sl.lens.logit_lens(model, clean, full)
    str_tokens = model.to_str_tokens(full[0])
    sl.plot.save(sl.plot.lens_table(lens, token_strings=lambda i: model.to_string([i]),
                                    title="decoder logit lens (clean clip)"), out / "whisper_logit_lens.png")
    lens_top = [[model.to_string([int(t)]) for t in row] for row in lens.top_tokens(1)[:, 0, :, 0]]

    _step("cross-attention alignment of each token to time", start)
    _, cross = model.run_with_cache(clean, full, names_filter="decoder.blocks.*.cross_attn.hook_pattern")
    alignment = cross["decoder.blocks.3.cross_attn.hook_pattern"][0].mean(0)[:, :frames]
    sl.plot.save(sl.plot.cross_attention_alignment(alignment, token_labels=str_tokens,
                                                   spectrogram=clean[:, : 2 * frames],
                                                   title="decoder block 3 cross-attention (head mean)"),
                 out / "whisper_cross_attention.png")
    peak_frames = {tok: int(alignment[i].argmax()) for i, tok in enumerate(str_tokens)}

    return {
        "transcripts": transcripts,
        "metric": f"logit({RIGHT!r}) - logit({WRONG!r}) after {PREFIX!r}",
        "clean_metric": clean_diff,
        "corrupted_metric": corrupted_diff,
        "patching": {"hooks": sweep.hook_names, "windows": sweep.slot_labels,
                     "normalized_recovery": values.tolist(), "forwards": sweep.forwards,
                     "strongest": {"hook": sweep.hook_names[best_layer], "frames": sweep.slot_labels[best_slot],
                                   "seconds": [r * 0.02 for r in sweep.slot_ranges[best_slot]],
                                   "recovery": float(values[best_layer, best_slot])}},
        "logit_lens_top1_by_layer": lens_top,
        "tokens": str_tokens,
        "cross_attention_peak_frame": peak_frames,
        "cached": {name: list(t.shape) for name, t in cache.items()},
    }


def hubert_demo(out: pathlib.Path, start: list[float]) -> dict:
    import speechlens as sl

    _step("loading tiny-hubert-digits-commands (embedded)", start)
    model = sl.load("tiny-hubert-digits-commands")
    clean_wave = sl.load_audio(speak(HUBERT_CLEAN, out / "hubert_clean.wav"))
    corrupted_wave = sl.load_audio(speak(HUBERT_CORRUPTED, out / "hubert_corrupted.wav"))
    transcripts = {"clean": model.transcribe(clean_wave), "corrupted": model.transcribe(corrupted_wave)}
    print(f"    clean:     {transcripts['clean']!r}\n    corrupted: {transcripts['corrupted']!r}")
    # Patching needs equal shapes: pad both clips with silence to the same length.
    length = max(clean_wave.numel(), corrupted_wave.numel())
    clean = torch.nn.functional.pad(clean_wave, (0, length - clean_wave.numel()))[None]
    corrupted = torch.nn.functional.pad(corrupted_wave, (0, length - corrupted_wave.numel()))[None]
    vocab = json.loads((pathlib.Path(model.path) / "vocab.json").read_text())
    target = torch.tensor([[vocab[c] for c in HUBERT_CLEAN.replace(" ", "|")]])

    def ctc_log_likelihood(logits: torch.Tensor) -> torch.Tensor:
        """log p(clean transcript) under CTC, per item: how strongly the model still hears it."""
        log_probs = torch.log_softmax(logits.float(), -1).transpose(0, 1)
        n = logits.shape[0]
        return -torch.nn.functional.ctc_loss(log_probs, target.expand(n, -1), torch.full((n,), logits.shape[1]),
                                             torch.full((n,), target.shape[1]), blank=0, reduction="none")

    _step("activation patching on HuBERT: every encoder layer x frame window", start)
    sweep = sl.patching.activation_patching(model, clean, corrupted, hooks="encoder.blocks.*.hook_resid_pre",
                                            metric=ctc_log_likelihood, window=FRAMES_PER_WINDOW, normalize=True)
    sl.plot.save(sl.plot.patching_heatmap(sweep, title="CTC log-likelihood of the clean transcript recovered "
                                                       "(HuBERT, 20 ms frames)"), out / "hubert_patching.png")
    values = sweep.values.float()
    best_layer, best_slot = divmod(int(values.nan_to_num(-1e9).argmax()), values.shape[1])
    return {
        "transcripts": transcripts,
        "metric": f"CTC log-likelihood of {HUBERT_CLEAN!r}",
        "clean_metric": sweep.clean_metric,
        "corrupted_metric": sweep.corrupted_metric,
        "patching": {"hooks": sweep.hook_names, "windows": sweep.slot_labels,
                     "normalized_recovery": values.tolist(),
                     "strongest": {"hook": sweep.hook_names[best_layer], "frames": sweep.slot_labels[best_slot],
                                   "seconds": [r * 0.02 for r in sweep.slot_ranges[best_slot]],
                                   "recovery": float(values[best_layer, best_slot])}},
    }


def write_html(out: pathlib.Path, report: dict) -> pathlib.Path:
    w, h = report["whisper"], report["hubert"]

    def section(title, body, images):
        imgs = "".join(f'<p><img src="{i}" style="max-width:100%"></p>' for i in images)
        return f"<h2>{html.escape(title)}</h2>{body}{imgs}"

    def facts(d):
        s = d["patching"]["strongest"]
        return (f"<p>Transcripts: clean <b>{html.escape(d['transcripts']['clean'])}</b>, corrupted "
                f"<b>{html.escape(d['transcripts']['corrupted'])}</b>.</p>"
                f"<p>Metric: {html.escape(d['metric'])}; clean {d['clean_metric']:.3f}, corrupted "
                f"{d['corrupted_metric']:.3f}. Strongest patch: {html.escape(s['hook'])}, frames {s['frames']} "
                f"({s['seconds'][0]:.2f}-{s['seconds'][1]:.2f} s), recovery {s['recovery']:.2f}.</p>")

    page = ("<!doctype html><meta charset='utf-8'><title>SpeechLens demo</title>"
            "<body style='font-family:sans-serif;max-width:1000px;margin:auto'>"
            "<h1>SpeechLens demo</h1><p>Real Whisper tiny.en weights and the embedded tiny HuBERT, on speech "
            "synthesized by espeak-ng. Numbers are in <a href='report.json'>report.json</a>.</p>"
            + section(f"Whisper: '{CLEAN}' vs '{CORRUPTED}'", facts(w),
                      ["whisper_patching.png", "whisper_logit_lens.png", "whisper_cross_attention.png"])
            + section(f"HuBERT: '{HUBERT_CLEAN}' vs '{HUBERT_CORRUPTED}'", facts(h), ["hubert_patching.png"])
            + "</body>")
    path = out / "index.html"
    path.write_text(page)
    return path


def demo(out: pathlib.Path) -> pathlib.Path:
    import matplotlib

    matplotlib.use("Agg")
    torch.manual_seed(0)
    out.mkdir(parents=True, exist_ok=True)
    start = [time.perf_counter()]
    report = {"whisper": whisper_demo(out, start), "hubert": hubert_demo(out, start)}
    report["seconds"] = time.perf_counter() - start[0]
    (out / "report.json").write_text(json.dumps(report, indent=1))
    page = write_html(out, report)
    _step("done", start)
    print(f"report: {page.resolve()}")
    return page


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="speechlens")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("demo", help="patching, logit lens and cross-attention on real weights; writes a report")
    run.add_argument("--out", type=pathlib.Path, default=pathlib.Path("demo-report"))
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
