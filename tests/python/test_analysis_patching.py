"""Activation and attribution patching against a plain HF forward-hook loop on the same weights."""
import pytest
import torch

import speechlens as sl
from analysis_helpers import hf_patching_loop, save_tiny_whisper

TOKENS = torch.tensor([[1, 5, 9, 14, 3, 7]])
POSITION, CORRECT, WRONG = 3, 11, 40


def metric(logits):
    return logits[:, POSITION, CORRECT] - logits[:, POSITION, WRONG]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_whisper")
    hf = save_tiny_whisper(folder)
    return sl.load(folder), hf


@pytest.fixture(scope="module")
def pair():
    g = torch.Generator().manual_seed(1)
    clean = torch.randn(1, 8, 16, generator=g)
    corrupted = clean.clone()
    corrupted[:, :, 4:12] = 2 * torch.randn(1, 8, 8, generator=g)  # corrupt a stretch of audio
    return (clean, TOKENS), (corrupted, TOKENS)


@pytest.mark.parametrize("hooks, window, max_batch", [
    ("encoder.blocks.*.hook_resid_pre", 1, 64),
    ("encoder.blocks.*.hook_resid_post", 3, 5),     # windows of 3 frames, chunks across hooks
    ("decoder.blocks.*.hook_resid_pre", 1, 4),
])
def test_position_sweep_matches_hf_loop(models, pair, hooks, window, max_batch):
    model, hf = models
    result = sl.patching.activation_patching(model, *pair, hooks=hooks, metric=metric, window=window,
                                             max_batch=max_batch, progress=False)
    reference = hf_patching_loop(hf, pair[0], pair[1], result.hook_names, metric, "position", window)
    assert result.values.shape == reference.shape
    torch.testing.assert_close(result.values, reference, atol=1e-5, rtol=0)
    assert result.axis_names == ["hook", "position"]
    assert result.forwards < reference.numel()  # batched, not one forward per configuration


def test_head_sweep_matches_hf_loop(models, pair):
    model, hf = models
    result = sl.patching.activation_patching(model, *pair, hooks="encoder.blocks.*.attn.hook_z", metric=metric,
                                             sweep="head", progress=False)
    reference = hf_patching_loop(hf, pair[0], pair[1], result.hook_names, metric, "head", n_heads=2)
    torch.testing.assert_close(result.values, reference, atol=1e-5, rtol=0)
    assert result.slot_labels == ["head 0", "head 1"]


def test_whole_sweep_and_reverse_match_hf_loop(models, pair):
    model, hf = models
    names = ["encoder.blocks.0.hook_resid_post", "decoder.blocks.1.hook_resid_pre"]
    result = sl.patching.activation_patching(model, *pair, hooks=names, metric=metric, sweep="whole",
                                             reverse=True, progress=False)
    reference = hf_patching_loop(hf, pair[1], pair[0], names, metric, "whole")
    torch.testing.assert_close(result.values, reference, atol=1e-5, rtol=0)


def test_identical_inputs_have_no_effect(models, pair):
    model, _ = models
    result = sl.patching.activation_patching(model, pair[0], pair[0], hooks="encoder.blocks.*.hook_resid_pre",
                                             metric=metric, progress=False)
    torch.testing.assert_close(result.values, torch.full_like(result.values, result.clean_metric), atol=1e-6, rtol=0)


def test_decoder_positions_after_the_metric_cannot_matter(models, pair):
    model, _ = models
    clean, corrupted = pair
    # Corrupt the decoder tokens too, so earlier positions do matter.
    corrupted = (corrupted[0], torch.tensor([[1, 5, 20, 14, 30, 31]]))
    result = sl.patching.activation_patching(model, clean, corrupted, hooks="decoder.blocks.*.hook_resid_pre",
                                             metric=metric, progress=False)
    after = result.values[:, POSITION + 1:]
    torch.testing.assert_close(after, torch.full_like(after, result.corrupted_metric), atol=1e-6, rtol=0)
    assert (result.values[:, :POSITION + 1] - result.corrupted_metric).abs().max() > 1e-3


def test_whole_residual_at_last_layer_recovers_clean(models, pair):
    model, _ = models
    result = sl.patching.activation_patching(model, *pair, hooks="decoder.blocks.1.hook_resid_post", metric=metric,
                                             sweep="whole", normalize=True, progress=False)
    torch.testing.assert_close(result.values, torch.ones(1, dtype=torch.float64), atol=1e-6, rtol=0)


def test_attribution_equals_activation_patching_when_metric_is_linear(models, pair):
    model, _ = models
    # A logit is linear in the final norm's output (logits = ln_final @ W_U^T).
    def linear_metric(logits):
        return logits[:, POSITION, CORRECT]
    kwargs = dict(hooks="decoder.ln_final.hook_normalized", metric=linear_metric, progress=False)
    exact = sl.patching.activation_patching(model, *pair, **kwargs)
    approx = sl.patching.attribution_patching(model, *pair, **kwargs)
    torch.testing.assert_close(approx.values, exact.values, atol=1e-5, rtol=0)
    assert approx.forwards == 2
    assert (exact.values[0, POSITION] - exact.corrupted_metric).abs() > 1e-3


def test_attribution_is_first_order_close_on_residuals(models, pair):
    model, _ = models
    kwargs = dict(hooks="decoder.blocks.*.hook_resid_pre", metric=metric, progress=False)
    exact = sl.patching.activation_patching(model, *pair, **kwargs)
    approx = sl.patching.attribution_patching(model, *pair, **kwargs)
    assert approx.values.shape == exact.values.shape
    # Positions after the metric get no gradient: exactly the corrupted metric in both.
    torch.testing.assert_close(approx.values[:, POSITION + 1:], exact.values[:, POSITION + 1:], atol=1e-6, rtol=0)
    corr = torch.corrcoef(torch.stack([approx.values.flatten(), exact.values.flatten()]))[0, 1]
    assert corr > 0.5


def test_batched_inputs_average_over_items(models):
    model, hf = models
    g = torch.Generator().manual_seed(3)
    clean = torch.randn(2, 8, 16, generator=g)
    corrupted = torch.randn(2, 8, 16, generator=g)
    tokens = TOKENS.repeat(2, 1)
    result = sl.patching.activation_patching(model, (clean, tokens), (corrupted, tokens),
                                             hooks="encoder.blocks.1.hook_resid_pre", metric=metric, window=2,
                                             max_batch=6, progress=False)
    reference = hf_patching_loop(hf, (clean, tokens), (corrupted, tokens), result.hook_names, metric, "position", 2)
    torch.testing.assert_close(result.values, reference, atol=1e-5, rtol=0)


def test_bad_requests_fail_clearly(models, pair):
    model, _ = models
    with pytest.raises(ValueError, match="one value per batch item"):
        sl.patching.activation_patching(model, *pair, hooks="encoder.blocks.0.hook_resid_pre",
                                        metric=lambda logits: logits.sum(), progress=False)
    with pytest.raises(KeyError):
        sl.patching.activation_patching(model, *pair, hooks="encoder.blocks.0.hook_resid_prex", metric=metric)
    with pytest.raises(ValueError, match="head sweep"):
        sl.patching.activation_patching(model, *pair, hooks="encoder.blocks.0.hook_resid_pre", metric=metric,
                                        sweep="head", progress=False)
    with pytest.raises(ValueError, match="same metric"):
        sl.patching.activation_patching(model, pair[0], pair[0], hooks="encoder.blocks.0.hook_resid_pre",
                                        metric=metric, normalize=True, progress=False)
    with pytest.raises(ValueError, match="one shape"):
        sl.patching.activation_patching(model, pair[0], (torch.randn(1, 8, 12), TOKENS),
                                        hooks="encoder.blocks.0.hook_resid_pre", metric=metric, progress=False)
    with pytest.raises(ValueError, match="sweep axis"):
        sl.patching.activation_patching(model, *pair, hooks="encoder.blocks.0.hook_resid_pre", metric=metric,
                                        sweep="diagonal", progress=False)
    with pytest.raises(ValueError, match="differentiable"):
        sl.patching.attribution_patching(model, *pair, hooks="encoder.blocks.0.hook_resid_pre",
                                         metric=lambda logits: logits.argmax(-1)[:, 0].float())
    assert model._core.hook_count == 0  # nothing left attached after the failures


def test_position_range_sweeps_only_those_positions(models, pair):
    model, _ = models
    full = sl.patching.activation_patching(model, *pair, hooks="encoder.blocks.*.hook_resid_pre", metric=metric,
                                           window=2, progress=False)
    part = sl.patching.activation_patching(model, *pair, hooks="encoder.blocks.*.hook_resid_pre", metric=metric,
                                           window=2, positions=(2, 6), progress=False)
    assert part.slot_labels == ["2-3", "4-5"]
    assert part.slot_ranges == [(2, 4), (4, 6)]
    torch.testing.assert_close(part.values, full.values[:, 1:3], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="empty"):
        sl.patching.activation_patching(model, *pair, hooks="encoder.blocks.0.hook_resid_pre", metric=metric,
                                        positions=(50, 60), progress=False)
