"""HookedHubert against HF transformers (eager attention, float32) on tiny random models.

Mapping of HF outputs to hook points:
  hidden_states[0]      encoder.blocks.0.hook_resid_pre
  hidden_states[i + 1]  encoder.blocks.{i}.hook_resid_post   (before ln_final when stable)
  attentions[i]         encoder.blocks.{i}.attn.hook_pattern
  last_hidden_state     HookedHubert.encode(...)
  logits (ForCTC)       ctc.hook_logits / forward(...)
plus the conv feature encoder layers and the positional conv via torch forward hooks on HF's
modules. Padded batches are compared on the frames where HF's output is defined: valid query
frames, and for attention the valid key frames too.
"""
import importlib.util
import pathlib

import pytest
import torch

transformers = pytest.importorskip("transformers")
import speechlens as sl  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "hubert_fixtures", pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "hubert_fixtures.py")
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)

TOL = 1e-4
LENGTHS = [2400, 1500, 2077]  # samples; the longest sets the padded length

CONFIGS = {
    # HuBERT base layout: GroupNorm on conv0, no conv bias, post-LN, no CTC head.
    "hubert_group_postln": (transformers.HubertModel, dict(feat_extract_norm="group", conv_bias=False)),
    # HuBERT large-ft layout: LayerNorm convs with bias, stable layer norm, CTC head, odd pos kernel,
    # and HuBERT's feat_proj_layer_norm switched off.
    "hubert_ctc_layer_stable": (transformers.HubertForCTC, dict(
        feat_extract_norm="layer", conv_bias=True, do_stable_layer_norm=True, feat_proj_layer_norm=False,
        num_conv_pos_embeddings=15)),
    # wav2vec2-base-960h layout, weights in the legacy weight_g / weight_v spelling.
    "wav2vec2_ctc_group_postln_legacy_wn": (transformers.Wav2Vec2ForCTC, dict(
        feat_extract_norm="group", conv_bias=True, legacy_weight_norm=True)),
    # wav2vec2-large-lv60 layout, other activations.
    "wav2vec2_layer_stable_relu": (transformers.Wav2Vec2Model, dict(
        feat_extract_norm="layer", conv_bias=True, do_stable_layer_norm=True, hidden_act="relu",
        feat_extract_activation="gelu_new")),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def pair(request, tmp_path_factory):
    model_class, config = CONFIGS[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    hf = fixtures.build(folder, model_class, seed=sorted(CONFIGS).index(request.param), **config)
    return hf, sl.load(folder), request.param


def _waves(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=g) * 0.3 for n in LENGTHS]


def _hf_batch(clips):
    fe = transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    out = fe([c.numpy() for c in clips], sampling_rate=16000, padding=True, return_tensors="pt")
    return out.input_values, out.attention_mask


def _base(hf):
    return getattr(hf, "hubert", None) or getattr(hf, "wav2vec2", None) or hf


def _max_diff(a, b):
    return (a.float() - b.float()).abs().max().item()


def test_features_match_hf_feature_extractor(pair):
    _, model, _ = pair
    values, mask = _hf_batch(_waves())
    ours, lengths = model.features(_waves(), return_lengths=True)
    assert ours.shape == values.shape
    assert _max_diff(ours, values) < 1e-5
    assert lengths.tolist() == mask.sum(-1).tolist()


@pytest.mark.parametrize("padded", [True, False], ids=["padded_batch", "single"])
def test_every_hidden_state_attention_and_logit_matches_hf(pair, padded):
    hf, model, name = pair
    values, mask = _hf_batch(_waves() if padded else _waves()[:1])
    base = _base(hf)

    # HF intermediates that output_hidden_states does not expose: the conv layers, pos conv.
    captured = {}
    handles = [layer.register_forward_hook(lambda m, i, o, k=f"conv{j}": captured.__setitem__(k, o))
               for j, layer in enumerate(base.feature_extractor.conv_layers)]
    handles.append(base.encoder.pos_conv_embed.register_forward_hook(
        lambda m, i, o: captured.__setitem__("pos_conv", o)))
    with torch.no_grad():
        ref = hf(values, attention_mask=mask if padded else None, output_hidden_states=True, output_attentions=True)
        ref_base = base(values, attention_mask=mask if padded else None)
    for h in handles:
        h.remove()

    lengths = mask.sum(-1) if padded else None
    out, cache = model.run_with_cache(values, lengths)
    frames = model.frames(mask.sum(-1))
    expected_frames = base._get_feat_extract_output_lengths(mask.sum(-1))
    assert frames.tolist() == expected_frames.tolist()

    diffs = {}

    def compare(label, ours, theirs, attention=False):
        worst = 0.0
        for b, n in enumerate(frames.tolist()):
            if attention:
                worst = max(worst, _max_diff(ours[b, :, :n, :n], theirs[b, :, :n, :n]))
                if n < ours.shape[-1]:  # padded keys get no attention at all
                    assert ours[b, :, :n, n:].abs().max().item() == 0.0
            else:
                worst = max(worst, _max_diff(ours[b, :n], theirs[b, :n]))
        diffs[label] = worst
        assert worst < TOL, f"{name}: {label} differs by {worst:.3g}"

    n_layers = hf.config.num_hidden_layers
    assert len(ref.hidden_states) == n_layers + 1 and len(ref.attentions) == n_layers
    for j in range(len(base.feature_extractor.conv_layers)):
        # Conv activations are [B, C, T_j]; compare them whole (HF pads the same way we do).
        diffs[f"conv{j}"] = _max_diff(cache[f"feature_extractor.conv{j}.hook_out"], captured[f"conv{j}"])
        assert diffs[f"conv{j}"] < TOL
    compare("pos_conv", cache["encoder.hook_pos_conv"], captured["pos_conv"])
    compare("hidden_states[0]", cache["encoder.blocks.0.hook_resid_pre"], ref.hidden_states[0])
    for i in range(n_layers):
        compare(f"hidden_states[{i + 1}]", cache[f"encoder.blocks.{i}.hook_resid_post"], ref.hidden_states[i + 1])
        compare(f"attentions[{i}]", cache[f"encoder.blocks.{i}.attn.hook_pattern"], ref.attentions[i], attention=True)
    compare("last_hidden_state", model.encode(values, lengths), ref_base.last_hidden_state)
    if hasattr(hf, "lm_head"):
        compare("logits (hooked)", out, ref.logits)
        compare("logits (fused attention)", model(values, lengths), ref.logits)
        compare("ctc.hook_logits", cache["ctc.hook_logits"], ref.logits)
    else:
        compare("output (fused attention)", model(values, lengths), ref.last_hidden_state)
    print(f"\n{name} {'padded' if padded else 'single'}: max |diff| " +
          ", ".join(f"{k}={v:.2g}" for k, v in diffs.items()))


def test_hook_names_and_config(pair):
    hf, model, name = pair
    names = model.hook_names()
    n_conv = len(hf.config.conv_dim)
    assert names[:n_conv + 1] == ["feature_extractor.hook_input"] + [
        f"feature_extractor.conv{i}.hook_out" for i in range(n_conv)]
    assert "feature_projection.hook_out" in names and "encoder.hook_pos_conv" in names
    stable = hf.config.do_stable_layer_norm
    assert ("encoder.ln_final.hook_normalized" in names) == stable
    assert ("encoder.ln_pre.hook_normalized" in names) == (not stable)
    assert ("ctc.hook_logits" in names) == hasattr(hf, "lm_head")
    for i in range(hf.config.num_hidden_layers):
        for suffix in ["hook_resid_pre", "ln1.hook_normalized", "attn.hook_q", "attn.hook_z", "attn.hook_pattern",
                       "hook_attn_out", "hook_resid_mid", "mlp.hook_pre", "mlp.hook_post", "hook_mlp_out",
                       "hook_resid_post"]:
            assert f"encoder.blocks.{i}.{suffix}" in names
    assert model.cfg.n_layers == hf.config.num_hidden_layers
    assert model.cfg.d_model == hf.config.hidden_size
    assert model.cfg.model_family == hf.config.model_type
    assert model.cfg.samples_per_frame == 20


def test_padding_is_masked_and_hooks_see_valid_lengths(pair):
    _, model, _ = pair
    clips = _waves()
    values, lengths = model.features(clips, return_lengths=True)
    seen = {}

    def record(tensor, hook):
        seen[hook.name] = (hook.valid_lengths, hook.position_mask(tensor.shape[1]))

    batched = model.run_with_hooks(values, lengths, fwd_hooks=[("encoder.blocks.1.hook_resid_post", record),
                                                               ("feature_extractor.conv0.hook_out", record)])
    frames = model.frames(lengths)
    valid, mask = seen["encoder.blocks.1.hook_resid_post"]
    assert valid.tolist() == frames.tolist()
    assert mask.sum(-1).tolist() == frames.tolist()
    # The conv layers run at their own frame rates: their valid lengths are in their own units.
    kernel, stride = model.cfg.conv_kernel[0], model.cfg.conv_stride[0]
    assert seen["feature_extractor.conv0.hook_out"][0].tolist() == ((lengths - kernel) // stride + 1).tolist()
    # With LayerNorm convs every layer is per frame, so a padded item equals itself run alone;
    # GroupNorm convs normalise over the padded length (as in HF), so they differ.
    if model.cfg.feat_extract_norm == "layer":
        alone = model(model.features(clips[1]))
        n = alone.shape[1]
        assert _max_diff(batched[1, :n], alone[0]) < TOL


def test_transcribe_matches_hf_greedy_decoding(tmp_path):
    hf = fixtures.build(tmp_path, transformers.Wav2Vec2ForCTC, seed=3)
    model = sl.load(tmp_path)
    processor_tok = transformers.Wav2Vec2CTCTokenizer.from_pretrained(tmp_path)
    clips = _waves(5)
    values, mask = _hf_batch(clips)
    with torch.no_grad():
        logits = hf(values, attention_mask=mask).logits
    frames = hf._get_feat_extract_output_lengths(mask.sum(-1))
    expected = [processor_tok.decode(logits[b, :n].argmax(-1).tolist()) for b, n in enumerate(frames.tolist())]
    assert model.transcribe(clips) == expected
    assert model.transcribe(clips[0]) == expected[0]
    ids = [0, 5, 5, 0, 5, 4, 4, 6, 3, 6, 0, 4, 1, 7, 2]
    for skip in (False, True):
        assert model.ctc_decode(ids, skip) == processor_tok.decode(ids, skip_special_tokens=skip)


def test_transcribe_without_ctc_head_is_a_clear_error(tmp_path):
    fixtures.build(tmp_path, transformers.HubertModel)
    model = sl.load(tmp_path)
    with pytest.raises(ValueError, match="no CTC head"):
        model.transcribe(torch.randn(1600))


def test_bad_inputs_are_clear_errors(pair):
    _, model, _ = pair
    with pytest.raises(ValueError, match="receptive field"):
        model(torch.randn(1, 12))
    with pytest.raises(ValueError, match=r"feature_lengths must lie in \[1, 1600\]"):
        model(torch.randn(2, 1600), torch.tensor([1600, 1700]))
    with pytest.raises(ValueError, match="batch size"):
        model(torch.randn(2, 1600), torch.tensor([1600]))
    with pytest.raises(ValueError, match="batch, samples"):
        model._core.run({"features": torch.randn(1, 1, 1600)})


def test_misshaped_checkpoint_names_the_tensor(tmp_path):
    from safetensors.torch import load_file, save_file

    fixtures.build(tmp_path, transformers.HubertForCTC)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    tensors["hubert.encoder.pos_conv_embed.conv.bias"] = torch.zeros(7)
    del tensors["lm_head.bias"]
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError) as info:
        sl.load(tmp_path)
    assert "pos_conv_embed.conv.bias" in str(info.value) and "lm_head.bias" in str(info.value)
