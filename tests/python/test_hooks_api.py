"""The Python hook contract: TL-style hook functions, filters, scoping, misuse."""
import gc
import re

import pytest
import torch

import speechlens as sl


@pytest.fixture(scope="module")
def model(tiny_whisper_dir):
    return sl.load(tiny_whisper_dir)


@pytest.fixture
def inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(1, 80, 120, generator=g), torch.tensor([[1, 7, 9, 11]])


def test_hook_names_cover_every_block_activation(model):
    names = model.hook_names()
    assert names[0] == "encoder.hook_mel" and names[-1] == "hook_logits"
    for stack in ("encoder", "decoder"):
        for suffix in ("hook_resid_pre", "ln1.hook_normalized", "attn.hook_q", "attn.hook_k", "attn.hook_v",
                       "attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z", "hook_attn_out",
                       "hook_resid_mid", "ln2.hook_normalized", "mlp.hook_pre", "mlp.hook_post", "hook_mlp_out",
                       "hook_resid_post"):
            assert f"{stack}.blocks.1.{suffix}" in names
    for name in ("decoder.blocks.0.cross_attn.hook_pattern", "decoder.blocks.0.hook_cross_attn_out",
                 "decoder.blocks.0.hook_resid_cross", "encoder.conv1.hook_out", "encoder.conv2.hook_out",
                 "encoder.hook_pos_embed", "encoder.ln_post.hook_normalized", "decoder.hook_tok_embed",
                 "decoder.hook_pos_embed", "decoder.ln_final.hook_normalized"):
        assert name in names
    assert len(names) == len(set(names))


def test_transformerlens_style_hook_functions_work_unchanged(model, inputs):
    seen = []

    def tl_hook(activation, hook):  # TL calls hook functions with hook= as a keyword
        seen.append((hook.name, hook.layer(), tuple(activation.shape)))
        return activation * 0.5 if hook.layer() == 0 else None

    clean = model(*inputs)
    patched = model.run_with_hooks(*inputs, fwd_hooks=[(lambda n: n.endswith("hook_mlp_out"), tl_hook)])
    # Forward order: the encoder's blocks, then the decoder's.
    assert [s[0] for s in seen] == ["encoder.blocks.0.hook_mlp_out", "encoder.blocks.1.hook_mlp_out",
                                    "decoder.blocks.0.hook_mlp_out", "decoder.blocks.1.hook_mlp_out"]
    assert [s[1] for s in seen] == [0, 1, 0, 1]
    assert not torch.allclose(clean, patched)
    assert model._core.hook_count == 0


def test_names_filter_accepts_names_globs_regexes_callables_and_lists(model, inputs):
    _, cache = model.run_with_cache(*inputs, names_filter="encoder.blocks.*.hook_resid_post")
    assert sorted(cache.keys()) == ["encoder.blocks.0.hook_resid_post", "encoder.blocks.1.hook_resid_post"]
    _, cache = model.run_with_cache(*inputs, names_filter=re.compile(r"decoder\.blocks\.\d\.hook_mlp_out"))
    assert len(cache) == 2
    _, cache = model.run_with_cache(*inputs, names_filter=lambda n: n.endswith("hook_pattern"))
    assert len(cache) == 2 + 2 + 2  # encoder self, decoder self, decoder cross
    _, cache = model.run_with_cache(*inputs, names_filter=["hook_logits", "encoder.hook_mel"])
    assert set(cache) == {"hook_logits", "encoder.hook_mel"}


def test_unknown_hook_names_raise_with_suggestions(model, inputs):
    with pytest.raises(KeyError, match="encoder.blocks.0.hook_resid_post"):
        model.run_with_cache(*inputs, names_filter="encoder.blocks.0.hook_resid_psot")
    with pytest.raises(sl.HookNameError):
        model.add_hook("encoder.blocks.9.*", lambda t, hook: None)
    assert model._core.hook_count == 0


def test_cache_is_zero_copy_and_tl_indexable(model, inputs):
    mel, tokens = inputs
    logits, cache = model.run_with_cache(mel, tokens)
    assert cache["encoder.hook_mel"].data_ptr() == mel.data_ptr()  # the very tensor we passed
    assert torch.equal(cache["resid_post", 1], cache["encoder.blocks.1.hook_resid_post"])
    assert torch.equal(cache["resid_post", -1, "decoder"], cache["decoder.blocks.1.hook_resid_post"])
    assert torch.equal(cache["hook_logits"], logits)
    assert "resid_pre" not in cache and ("resid_pre", 0) in cache
    assert cache.accumulated_resid().shape == (3, 1, 60, 48)
    assert cache.stack_activation("pattern").shape == (2, 1, 3, 60, 60)
    parts = cache.decompose_resid(stack="decoder")
    assert torch.allclose(parts.sum(0), cache["resid_post", 1, "decoder"], atol=1e-5)
    # TransformerLens's apply_ln_to_stack divides by the cached scale: linear in the components.
    normed = cache.apply_ln_to_stack(parts, stack="decoder")
    whole = cache.apply_ln_to_stack(cache["resid_post", 1, "decoder"], stack="decoder")
    assert torch.allclose(normed.sum(0), whole, atol=1e-5)
    resid = cache["resid_post", 1, "decoder"]
    centred = resid - resid.mean(-1, keepdim=True)
    assert torch.allclose(whole, centred / cache["decoder.ln_final.hook_scale"], atol=1e-6)


def test_python_exception_in_hook_propagates_and_the_hook_is_gone(model, inputs):
    class Boom(Exception):
        pass

    def explode(activation, hook):
        raise Boom(hook.name)

    with pytest.raises(Boom, match="encoder.blocks.1.hook_resid_pre"):
        model.run_with_hooks(*inputs, fwd_hooks=[("encoder.blocks.1.hook_resid_pre", explode)])
    assert model._core.hook_count == 0
    with pytest.raises(Boom):
        with model.hooks(fwd_hooks=[("hook_logits", explode)]):
            model(*inputs)
    assert model._core.hook_count == 0
    model(*inputs)  # still usable


def test_wrongly_shaped_or_typed_replacements_are_clear_errors(model, inputs):
    with pytest.raises(ValueError, match="must keep its shape"):
        model.run_with_hooks(*inputs, fwd_hooks=[("hook_logits", lambda t, hook: t[:, :1])])
    with pytest.raises(ValueError, match="returns None or a torch.Tensor"):
        model.run_with_hooks(*inputs, fwd_hooks=[("hook_logits", lambda t, hook: 3)])
    assert model._core.hook_count == 0


def test_wrong_input_shapes_and_tokens_are_clear_errors(model):
    with pytest.raises(ValueError, match="log-mel"):
        model(torch.randn(1, 81, 120), torch.tensor([[1]]))
    with pytest.raises(ValueError, match="mel frames"):
        model(torch.randn(1, 80, 400), torch.tensor([[1]]))
    with pytest.raises(ValueError, match="token ids"):
        model(torch.randn(1, 80, 120), torch.tensor([[100000]]))
    with pytest.raises(ValueError):
        model(torch.randn(80), torch.tensor([[1]]))


def test_permanent_hooks_survive_reset_until_asked(model, inputs):
    calls = []
    model.add_hook("hook_logits", lambda t, hook: calls.append(1), is_permanent=True)
    model.reset_hooks()
    model(*inputs)
    assert calls == [1]
    model.reset_hooks(including_permanent=True)
    model(*inputs)
    assert calls == [1]


def test_hook_context_reports_stack_layer_and_lengths(model, inputs):
    mel, tokens = inputs
    seen = {}

    def look(t, hook):
        seen[hook.name] = (hook.stack, hook.layer(), hook.decode_step, hook.valid_lengths)

    model.run_with_hooks(mel, tokens, torch.tensor([100]),
                         fwd_hooks=[("encoder.blocks.1.hook_resid_post", look), ("hook_logits", look)])
    stack, layer, step, lengths = seen["encoder.blocks.1.hook_resid_post"]
    assert (stack, layer, step) == ("encoder", 1, -1)
    assert lengths.tolist() == [50]  # 100 mel frames -> 50 encoder frames
    assert seen["hook_logits"][:2] == ("decoder", -1)


def test_cache_trim_padding_and_memory_cap(model, inputs):
    mel, tokens = inputs
    _, cache = model.run_with_cache(mel, tokens, torch.tensor([40]), trim_padding=True,
                                    names_filter="encoder.blocks.0.hook_resid_post")
    assert cache["encoder.blocks.0.hook_resid_post"].shape[1] == 20
    with pytest.raises(ValueError, match="memory cap"):
        model.run_with_cache(mel, tokens, max_bytes=1000)
    assert model._core.hook_count == 0


def test_cached_tensors_outlive_the_model(tiny_whisper_dir, inputs):
    model = sl.load(tiny_whisper_dir)
    _, cache = model.run_with_cache(*inputs, names_filter="encoder.blocks.0.hook_resid_post")
    expected = model.run(sl.ModelInputs(*inputs), stop_at="encoder.blocks.0.hook_resid_post").clone()
    del model
    gc.collect()
    # The cached tensor owns its memory: after the model (and its weights) are gone it still
    # holds exactly what the forward computed.
    assert torch.equal(cache["resid_post", 0], expected)


def test_hook_dict_and_stop_at_layer(model, inputs):
    proxy = model.hook_dict["encoder.blocks.0.hook_resid_pre"]
    calls = []
    proxy.add_hook(lambda t, hook: calls.append(hook.name))
    model(*inputs)
    proxy.remove_hooks()
    model(*inputs)
    assert calls == ["encoder.blocks.0.hook_resid_pre"]
    resid, cache = model.run_with_cache(*inputs, stop_at_layer=1)
    assert torch.equal(resid, cache["resid_pre", 1])
    assert "decoder.hook_tok_embed" not in cache


def test_cfg_has_transformerlens_keys(model):
    for key in ("n_layers", "d_model", "n_heads", "d_head", "d_mlp", "d_vocab"):
        assert key in model.cfg
    assert model.cfg.d_head * model.cfg.n_heads == model.cfg.d_model


def test_trim_padding_cuts_each_activation_along_its_own_time_axis(model, inputs):
    mel, tokens = inputs
    _, cache = model.run_with_cache(mel, tokens, torch.tensor([40]), trim_padding=True,
                                    names_filter=["encoder.conv1.hook_out", "encoder.conv2.hook_out", "encoder.hook_mel",
                                                  "encoder.blocks.0.attn.hook_pattern",
                                                  "decoder.blocks.0.cross_attn.hook_pattern"])
    # Channels-first convolutions: time is dim 2, in mel frames, then in encoder frames after conv2.
    assert cache["encoder.hook_mel"].shape == (1, mel.shape[1], 40)
    assert cache["encoder.conv1.hook_out"].shape == (1, model.cfg.d_model, 40)
    assert cache["encoder.conv2.hook_out"].shape == (1, model.cfg.d_model, 20)
    # Patterns: queries and keys are both encoder frames; cross-attention keys are encoder frames.
    assert cache["encoder.blocks.0.attn.hook_pattern"].shape[2:] == (20, 20)
    assert cache["decoder.blocks.0.cross_attn.hook_pattern"].shape[2:] == (tokens.shape[1], 20)
    assert cache.lengths("encoder.conv1.hook_out").tolist() == [40]
    assert cache.lengths("encoder.conv2.hook_out").tolist() == [20]
