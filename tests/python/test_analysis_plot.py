"""Every plot returns a matplotlib Figure and saves with one call."""
import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import speechlens as sl  # noqa: E402
from analysis_helpers import save_tiny_whisper  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_whisper_plot")
    save_tiny_whisper(folder, seed=2)
    return sl.load(folder)


def test_every_plot_saves_a_png(model, tmp_path):
    g = torch.Generator().manual_seed(0)
    clean, corrupted = torch.randn(1, 8, 16, generator=g), torch.randn(1, 8, 16, generator=g)
    tokens = torch.tensor([[1, 5, 9]])
    metric = sl.patching.logit_diff_metric(-1, 3, 4)
    res = sl.patching.activation_patching(model, (clean, tokens), (corrupted, tokens),
                                          hooks="encoder.blocks.*.hook_resid_pre", metric=metric, window=2,
                                          progress=False)
    heads = sl.patching.activation_patching(model, (clean, tokens), (corrupted, tokens),
                                            hooks=["decoder.blocks.0.attn.hook_z", "encoder.blocks.1.attn.hook_z"],
                                            metric=metric, sweep="head", progress=False)
    assert heads.hook_names == ["encoder.blocks.1.attn.hook_z", "decoder.blocks.0.attn.hook_z"]  # model order
    _, cache = model.run_with_cache(clean, tokens, names_filter=["encoder.blocks.0.attn.hook_pattern",
                                                                 "decoder.blocks.1.cross_attn.hook_pattern"])
    lens = sl.lens.logit_lens(model, clean, tokens)
    x = torch.randn(80, 4, generator=g)
    probes = sl.probes.probe_layers([x, x], (x[:, 0] > 0).long(), progress=False)
    figures = {
        "heat.png": sl.plot.patching_heatmap(res, spectrogram=clean[0]),
        "heads.png": sl.plot.patching_heatmap(heads),
        "tokens.png": sl.plot.patching_heatmap(sl.patching.activation_patching(
            model, (clean, tokens), (clean, torch.tensor([[1, 7, 9]])), hooks="decoder.blocks.*.hook_resid_pre",
            metric=metric, progress=False), token_labels=["<sot>", "a", "b"]),
        "pattern.png": sl.plot.attention_pattern(cache["encoder.blocks.0.attn.hook_pattern"][0, 0]),
        "pattern_spec.png": sl.plot.attention_pattern(cache["encoder.blocks.0.attn.hook_pattern"][0, 0],
                                                      spectrogram=clean[0], query=3),
        "cross.png": sl.plot.cross_attention_alignment(cache["decoder.blocks.1.cross_attn.hook_pattern"][0, 0],
                                                       ["<sot>", "a", "b"], spectrogram=clean[0]),
        "lens.png": sl.plot.lens_table(lens),
        "probes.png": sl.plot.probe_curves(probes),
        "cka.png": sl.plot.cka_heatmap(sl.stats.cka_matrix([x, x * 2])),
        "sel.png": sl.plot.selectivity_histogram(torch.rand(2, 30)),
    }
    for name, fig in figures.items():
        assert isinstance(fig, Figure)
        path = sl.plot.save(fig, tmp_path / "figs" / name)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
