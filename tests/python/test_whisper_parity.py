"""HookedWhisper against HF WhisperForConditionalGeneration on the same weights."""
import pytest
import torch

import speechlens as sl

TOL = 1e-4


def _inputs(hf, n_mels, batch=2, tokens=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    frames = 2 * hf.config.max_source_positions  # HF insists on exactly this many frames
    mel = torch.randn(batch, n_mels, frames, generator=g)
    ids = torch.randint(0, hf.config.vocab_size, (batch, tokens), generator=g)
    return mel, ids


def test_logits_and_every_hidden_state_and_attention_match_hf(whisper_pair):
    hf, folder, n_mels = whisper_pair
    model = sl.load(folder)
    mel, ids = _inputs(hf, n_mels)
    with torch.no_grad():
        ref = hf(input_features=mel, decoder_input_ids=ids, output_hidden_states=True, output_attentions=True)
    logits, cache = model.run_with_cache(mel, ids)

    assert (logits - ref.logits).abs().max() <= TOL
    for stack, states in (("encoder", ref.encoder_hidden_states), ("decoder", ref.decoder_hidden_states)):
        n = len(states) - 1
        final = "encoder.ln_post.hook_normalized" if stack == "encoder" else "decoder.ln_final.hook_normalized"
        # HF reports the stream entering block 0, leaving each block, and the final norm's output.
        ours = [cache["resid_pre", 0, stack]] + [cache["resid_post", i, stack] for i in range(n - 1)] + [cache[final]]
        for i, (a, b) in enumerate(zip(ours, states)):
            assert (a - b).abs().max() <= TOL, f"{stack} hidden state {i}"
    for i, pattern in enumerate(ref.encoder_attentions):
        assert (cache["pattern", i, "encoder"] - pattern).abs().max() <= TOL
    for i, pattern in enumerate(ref.decoder_attentions):
        assert (cache["pattern", i, "decoder"] - pattern).abs().max() <= TOL
    for i, pattern in enumerate(ref.cross_attentions):
        assert (cache[f"decoder.blocks.{i}.cross_attn.hook_pattern"] - pattern).abs().max() <= TOL


def test_per_head_hooks_have_transformerlens_shapes(whisper_pair):
    hf, folder, n_mels = whisper_pair
    model = sl.load(folder)
    mel, ids = _inputs(hf, n_mels, batch=1, tokens=5)
    _, cache = model.run_with_cache(mel, ids, names_filter="*.blocks.0.*")
    heads, d_head = model.cfg.n_heads, model.cfg.d_head
    frames = hf.config.max_source_positions
    assert cache["encoder.blocks.0.attn.hook_q"].shape == (1, frames, heads, d_head)
    assert cache["encoder.blocks.0.attn.hook_z"].shape == (1, frames, heads, d_head)
    assert cache["encoder.blocks.0.attn.hook_attn_scores"].shape == (1, heads, frames, frames)
    assert cache["decoder.blocks.0.cross_attn.hook_pattern"].shape[-2:] == (5, frames)
    # z recombined through the output projection is the attention output.
    z = cache["encoder.blocks.0.attn.hook_z"].flatten(-2)
    o = hf.model.encoder.layers[0].self_attn.out_proj
    assert (o(z) - cache["encoder.blocks.0.hook_attn_out"]).abs().max() <= TOL


def test_fused_and_explicit_attention_paths_agree(tiny_whisper_dir):
    model = sl.load(tiny_whisper_dir)
    mel = torch.randn(1, 80, 120)
    ids = torch.tensor([[1, 7, 9, 11]])
    fused = model(mel, ids)
    # Observing the pattern forces the explicit path everywhere.
    explicit = model.run_with_hooks(mel, ids, fwd_hooks=[("*.hook_pattern", lambda t, hook: None)])
    assert (fused - explicit).abs().max() <= 1e-5


def _hf_greedy(hf, mel, prompt, max_new):
    cfg = hf.config
    tokens = torch.tensor([prompt] * mel.shape[0])
    done = torch.zeros(mel.shape[0], dtype=torch.bool)
    out = [[] for _ in range(mel.shape[0])]
    with torch.no_grad():
        for step in range(max_new):
            logits = hf(input_features=mel, decoder_input_ids=tokens).logits[:, -1].clone()
            logits[:, cfg.suppress_tokens] = -float("inf")
            if step == 0:
                logits[:, cfg.begin_suppress_tokens] = -float("inf")
            nxt = logits.argmax(-1)
            for b in range(len(out)):
                if not done[b] and nxt[b] != cfg.eos_token_id:
                    out[b].append(int(nxt[b]))
            done |= nxt == cfg.eos_token_id
            if done.all():
                break
            nxt = torch.where(done, torch.full_like(nxt, cfg.eos_token_id), nxt)
            tokens = torch.cat([tokens, nxt[:, None]], 1)
    return out


def test_greedy_generation_with_kv_cache_is_token_identical(whisper_pair):
    hf, folder, n_mels = whisper_pair
    model = sl.load(folder)
    mel, _ = _inputs(hf, n_mels, batch=3, seed=3)
    prompt = [hf.config.decoder_start_token_id, 7]
    ours = model.generate(mel, prompt=prompt, max_new_tokens=12)
    assert ours == _hf_greedy(hf, mel, prompt, 12)
    assert all(len(seq) > 0 for seq in ours)


def test_hooks_fire_at_every_decode_step(tiny_whisper_dir):
    model = sl.load(tiny_whisper_dir)
    steps = []
    model.add_hook("decoder.blocks.0.hook_resid_pre", lambda t, hook: steps.append((hook.decode_step, t.shape[1])))
    try:
        out = model.generate(torch.randn(1, 80, 120), prompt=[1, 7, 8], max_new_tokens=4, apply_suppress_tokens=False)
    finally:
        model.reset_hooks()
    n = len(out[0]) + (1 if len(out[0]) < 4 else 0)
    assert [s for s, _ in steps] == list(range(len(steps)))
    assert steps[0][1] == 3 and all(length == 1 for _, length in steps[1:])
    assert len(steps) >= min(n, 4)


def test_patching_matches_the_same_patch_through_a_pytorch_hook_on_hf(whisper_pair):
    hf, folder, n_mels = whisper_pair
    model = sl.load(folder)
    mel, ids = _inputs(hf, n_mels, batch=1, seed=5)
    g = torch.Generator().manual_seed(9)
    replacement = torch.randn(1, hf.config.max_source_positions, hf.config.d_model, generator=g)

    def ours(act, hook):
        patched = act.clone()
        patched[:, 3:9] = replacement[:, 3:9]
        return patched

    def theirs(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        patched = hidden.clone()
        patched[:, 3:9] = replacement[:, 3:9]
        return (patched,) + tuple(output[1:]) if isinstance(output, tuple) else patched

    handle = hf.model.encoder.layers[0].register_forward_hook(theirs)
    try:
        with torch.no_grad():
            ref = hf(input_features=mel, decoder_input_ids=ids).logits
    finally:
        handle.remove()
    got = model.run_with_hooks(mel, ids, fwd_hooks=[("encoder.blocks.0.hook_resid_post", ours)])
    clean = model(mel, ids)
    assert (got - ref).abs().max() <= TOL
    assert (got - clean).abs().max() > 1e-3  # the patch did something

    # Ablating decoder MLP 1 through fc2's output equals zeroing hook_mlp_out.
    handle = hf.model.decoder.layers[1].fc2.register_forward_hook(lambda m, a, o: torch.zeros_like(o))
    try:
        with torch.no_grad():
            ref = hf(input_features=mel, decoder_input_ids=ids).logits
    finally:
        handle.remove()
    got = model.run_with_hooks(mel, ids, fwd_hooks=[("decoder.blocks.1.hook_mlp_out", lambda t, hook: torch.zeros_like(t))])
    assert (got - ref).abs().max() <= TOL


def test_gradients_at_hook_points_match_autograd_on_hf(tiny_whisper_dir):
    import transformers

    hf = transformers.WhisperForConditionalGeneration.from_pretrained(tiny_whisper_dir).eval()
    model = sl.load(tiny_whisper_dir)
    mel = torch.randn(1, 80, 120)
    ids = torch.tensor([[1, 7, 9]])
    metric = lambda logits: logits[0, -1, 11] - logits[0, -1, 12]  # noqa: E731

    captured = {}

    def keep(module, args, output):
        output[0].retain_grad() if isinstance(output, tuple) else output.retain_grad()
        captured["act"] = output[0] if isinstance(output, tuple) else output

    handle = hf.model.encoder.layers[0].register_forward_hook(keep)
    try:
        metric(hf(input_features=mel, decoder_input_ids=ids).logits).backward()
    finally:
        handle.remove()
    _, cache = model.run_with_cache(mel, ids, names_filter="encoder.blocks.0.hook_resid_post", incl_bwd=True,
                                    backward_metric=metric)
    grad = cache["encoder.blocks.0.hook_resid_post_grad"]
    assert (grad - captured["act"].grad).abs().max() <= 1e-5


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_weights_follow_the_dtype(tiny_whisper_dir, dtype):
    model32 = sl.load(tiny_whisper_dir)
    model = sl.load(tiny_whisper_dir, dtype=str(dtype).split(".")[1])
    assert model.dtype == dtype
    mel = torch.randn(1, 80, 120)
    ids = torch.tensor([[1, 7, 9]])
    low = model(mel, ids)
    assert low.dtype == dtype
    assert (low.float() - model32(mel, ids)).abs().max() < 0.1
