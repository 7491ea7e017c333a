"""HookedQwen2Audio against HF transformers' Qwen2AudioForConditionalGeneration on tiny
random-initialised checkpoints saved by this test: processor output (chat template, <|AUDIO|>
expansion, Qwen2 tokenizer ids, padding), logits and intermediate states in float32 on a batch
of two clips of different lengths, greedy generation token for token, and errors."""
import importlib.util
import json
import pathlib

import pytest
import torch

import speechlens as sl

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

_spec = importlib.util.spec_from_file_location(
    "text_fixtures", pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "text_fixtures.py")
text_fx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(text_fx)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"]
PROMPTS = ["What is said in this clip?", "Describe the sound, please."]
TOLERANCE = 1e-4

# Two language models: grouped-query attention with a separate head, and plain multi-head
# attention with the head tied to the embeddings (and another RoPE base).
CONFIGS = {
    "gqa-untied": dict(num_attention_heads=4, num_key_value_heads=2, tie=False, rope_theta=10000.0),
    "mha-tied": dict(num_attention_heads=4, num_key_value_heads=4, tie=True, rope_theta=500.0),
}


def train_tokenizer(out: pathlib.Path):
    """A small byte-level BPE with Qwen2's NFC normaliser, split regex and special tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(text_fx.QWEN2_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=420, show_progress=False,
                                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                             special_tokens=SPECIAL_TOKENS)
    tok.train_from_iterator(text_fx.CORPUS + PROMPTS * 20, trainer)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer", "pad_token": "<|endoftext|>", "eos_token": "<|im_end|>",
        "padding_side": "left", "model_max_length": 32768}))
    return tok


def hf_tokenizer(folder):
    return transformers.AutoTokenizer.from_pretrained(str(folder))


def hf_processor(folder):
    fe = transformers.WhisperFeatureExtractor.from_pretrained(str(folder))
    return transformers.Qwen2AudioProcessor(feature_extractor=fe, tokenizer=hf_tokenizer(folder))


def build_checkpoint(folder: pathlib.Path, kind: str):
    torch.manual_seed(1234 if kind == "gqa-untied" else 99)
    tok = train_tokenizer(folder)
    spec = CONFIGS[kind]
    vocab = tok.get_vocab_size() + 12  # room past the tokenizer, as real checkpoints have
    # 1 s windows: 100 log-mel frames -> 50 conv frames (max_source_positions) -> 25 audio tokens.
    transformers.WhisperFeatureExtractor(feature_size=80, chunk_length=1).save_pretrained(str(folder))
    config = transformers.Qwen2AudioConfig(
        audio_config=dict(d_model=32, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=64,
                          num_mel_bins=80, max_source_positions=50),
        text_config=dict(model_type="qwen2", vocab_size=vocab, hidden_size=64, intermediate_size=96,
                         num_hidden_layers=3, num_attention_heads=spec["num_attention_heads"],
                         num_key_value_heads=spec["num_key_value_heads"], tie_word_embeddings=spec["tie"],
                         rms_norm_eps=1e-6, rope_parameters={"rope_type": "default", "rope_theta": spec["rope_theta"]},
                         eos_token_id=tok.token_to_id("<|im_end|>"), pad_token_id=tok.token_to_id("<|endoftext|>"),
                         initializer_range=0.1),  # larger than the default: peaked logits, varied greedy output
        audio_token_index=tok.token_to_id("<|AUDIO|>"))
    model = transformers.Qwen2AudioForConditionalGeneration(config).eval()
    with torch.no_grad():  # random init leaves the norms at one; vary them so that they matter
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.add_(0.1 * torch.randn_like(p))
        if spec["tie"]:
            model.lm_head.weight.copy_(model.model.language_model.embed_tokens.weight)
    model.generation_config.eos_token_id = [tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")]
    model.generation_config.pad_token_id = tok.token_to_id("<|endoftext|>")
    model.save_pretrained(str(folder))
    if spec["tie"]:  # a tied checkpoint leaves the head out
        from safetensors.torch import load_file, save_file

        weights = load_file(str(folder / "model.safetensors"))
        del weights["language_model.lm_head.weight"]
        save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
        cfg = json.loads((folder / "config.json").read_text())
        assert cfg["text_config"]["tie_word_embeddings"]
    return model


def clips():
    g = torch.Generator().manual_seed(7)
    t = torch.arange(16000) / 16000
    long = (0.4 * torch.sin(2 * torch.pi * 220 * t) + 0.05 * torch.randn(16000, generator=g))[:9600]
    short = (0.3 * torch.sin(2 * torch.pi * 440 * t) * torch.sin(2 * torch.pi * 3 * t)
             + 0.05 * torch.randn(16000, generator=g))[:5600]
    return [long.float(), short.float()]


@pytest.fixture(scope="module", params=list(CONFIGS))
def setup(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"qwen2audio-{request.param}")
    hf_model = build_checkpoint(folder, request.param)
    processor = hf_processor(folder)
    waves = clips()
    texts = [sl._C.models.Qwen2AudioProcessor.chat_prompt(p) for p in PROMPTS]
    hf_inputs = processor(text=texts, audio=[w.numpy() for w in waves], return_tensors="pt", padding=True,
                          sampling_rate=16000)
    model = sl.load(folder)
    return dict(kind=request.param, folder=folder, hf=hf_model, processor=processor, model=model, waves=waves,
                texts=texts, hf_inputs=hf_inputs)


def test_chat_template_matches_hf(setup):
    messages = [{"role": "user", "content": [{"type": "audio", "audio_url": "clip.wav"},
                                             {"type": "text", "text": PROMPTS[0]}]}]
    expected = setup["processor"].apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert sl._C.models.Qwen2AudioProcessor.chat_prompt(PROMPTS[0]) == expected


def test_tokenizer_ids_match_hf(setup):
    hf_tok = hf_tokenizer(setup["folder"])
    ours = setup["model"].processor
    strings = text_fx.TEST_STRINGS + setup["texts"] + [
        "<|audio_bos|><|AUDIO|><|AUDIO|><|audio_eos|>", "Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\nhi",
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n", "<|AUDIO|> <|AUDIO|>x<|AUDIO",
    ]
    for text in strings:
        assert ours.encode(text) == hf_tok(text, add_special_tokens=False)["input_ids"], repr(text)


def test_processor_matches_hf(setup):
    ours = setup["model"].prepare(setup["waves"], PROMPTS)
    hf = setup["hf_inputs"]
    assert torch.equal(ours["input_ids"], hf["input_ids"])
    assert torch.equal(ours["attention_mask"], hf["attention_mask"].long())
    assert torch.equal(ours["feature_attention_mask"].long(), hf["feature_attention_mask"].long())
    assert ours["audio_token_counts"] == [15, 9]  # 60 and 35 valid mel frames
    assert (ours["input_features"] - hf["input_features"]).abs().max().item() < 1e-4
    # the two prompts differ in length: the shorter one is left-padded
    assert ours["attention_mask"][:, 0].tolist().count(0) >= 1


def reference_run(setup):
    """HF forward with the position ids HF generate uses, plus the audio tower and projector
    outputs and every hidden state."""
    hf, inputs = setup["hf"], setup["hf_inputs"]
    captured = {}
    hooks = [hf.model.audio_tower.register_forward_hook(lambda m, i, o: captured.__setitem__("audio", o.last_hidden_state)),
             hf.model.multi_modal_projector.register_forward_hook(lambda m, i, o: captured.__setitem__("proj", o))]
    mask = inputs["attention_mask"]
    positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
    try:
        with torch.no_grad():
            out = hf(**inputs, position_ids=positions, output_hidden_states=True)
    finally:
        for h in hooks:
            h.remove()
    return out, captured


def test_logits_and_states_match_hf(setup):
    model, inputs = setup["model"], setup["hf_inputs"]
    out, captured = reference_run(setup)
    logits, cache = model.run_with_cache(inputs["input_features"], inputs["input_ids"],
                                         feature_attention_mask=inputs["feature_attention_mask"],
                                         attention_mask=inputs["attention_mask"])
    real = inputs["attention_mask"].bool()
    assert logits.shape == out.logits.shape
    assert (logits[real] - out.logits[real]).abs().max().item() < TOLERANCE

    # audio tower (valid pooled frames only) and projector
    counts = [15, 9]
    for b, n in enumerate(counts):
        ours_audio = cache["audio_encoder.ln_post.hook_normalized"][b, :n]
        assert (ours_audio - captured["audio"][b, :n]).abs().max().item() < TOLERANCE
        assert (cache["projector.hook_out"][b, :n] - captured["proj"][b, :n]).abs().max().item() < TOLERANCE

    # hidden states: embeddings (audio merged), each block's output, the final norm
    hidden = out.hidden_states
    n_layers = model.cfg.n_layers
    assert (cache["lm.hook_embed"][real] - hidden[0][real]).abs().max().item() < TOLERANCE
    for i in range(n_layers - 1):
        assert (cache["resid_post", i][real] - hidden[i + 1][real]).abs().max().item() < TOLERANCE, i
    final = cache["lm.ln_final.hook_normalized"]
    assert (final[real] - hidden[n_layers][real]).abs().max().item() < TOLERANCE


def test_modality_positions(setup):
    model, inputs = setup["model"], setup["hf_inputs"]
    audio = model.audio_positions(inputs["input_ids"])
    text = model.text_positions(inputs["input_ids"], inputs["attention_mask"])
    assert audio.sum(-1).tolist() == [15, 9]
    assert not (audio & text).any()
    assert torch.equal(audio | text, inputs["attention_mask"].bool())


def hf_generate(setup, max_new_tokens, **kwargs):
    inputs = setup["hf_inputs"]
    with torch.no_grad():
        out = setup["hf"].generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, **kwargs)
    new = out[:, inputs["input_ids"].shape[1]:].tolist()
    eos = set(kwargs.get("eos_token_id", setup["hf"].generation_config.eos_token_id))
    trimmed = []
    for row in new:
        cut = next((i for i, t in enumerate(row) if t in eos), len(row))
        trimmed.append(row[:cut])
    return trimmed


def test_greedy_generation_matches_hf(setup):
    model, inputs = setup["model"], setup["hf_inputs"]
    expected = hf_generate(setup, 12)
    ours = model.generate_ids(inputs["input_features"], inputs["input_ids"],
                              inputs["feature_attention_mask"].sum(-1), inputs["attention_mask"], max_new_tokens=12)
    assert ours == expected
    # Stop tokens: make a later token of item 0 (one it has not generated before) an end token.
    first_new = [k for k in range(1, len(expected[0])) if expected[0][k] not in expected[0][:k]]
    if not first_new:
        pytest.skip("item 0 repeats one token; no stop token to pick")
    stop = expected[0][first_new[0]]
    expected_stop = hf_generate(setup, 12, eos_token_id=[stop])
    ours_stop = model.generate_ids(inputs["input_features"], inputs["input_ids"],
                                   inputs["feature_attention_mask"].sum(-1), inputs["attention_mask"],
                                   max_new_tokens=12, eos_token_ids=[stop])
    assert ours_stop == expected_stop
    assert len(ours_stop[0]) == first_new[0]


def test_generate_from_waveform_and_hooks_per_step(setup):
    model = setup["model"]
    steps = []
    with model.hooks(fwd_hooks=[("lm.blocks.0.hook_resid_pre", lambda t, hook: steps.append((hook.decode_step, t.shape[1])))]):
        text = model.generate(setup["waves"][0], PROMPTS[0], max_new_tokens=5)
    assert isinstance(text, str)
    assert [s for s, _ in steps] == list(range(len(steps)))
    assert steps[0][1] > 15 and all(n == 1 for _, n in steps[1:])
    ids = model.generate_ids(**{k: v for k, v in _single_inputs(model, setup).items()}, max_new_tokens=5)
    assert model.processor.decode(ids[0], True) == text


def _single_inputs(model, setup):
    batch = model.prepare(setup["waves"][0], PROMPTS[0])
    return dict(features=batch["input_features"], input_ids=batch["input_ids"],
                feature_lengths=batch["feature_lengths"], attention_mask=batch["attention_mask"])


def test_patching_audio_changes_only_later_positions(setup):
    """Zeroing the projected audio changes logits at audio and later positions, never before."""
    model, inputs = setup["model"], setup["hf_inputs"]
    args = (inputs["input_features"], inputs["input_ids"])
    kwargs = dict(feature_attention_mask=inputs["feature_attention_mask"], attention_mask=inputs["attention_mask"])
    clean = model(*args, **kwargs)
    patched = model.run_with_hooks(*args, fwd_hooks=[("projector.hook_out", lambda t, hook: torch.zeros_like(t))],
                                   **kwargs)
    audio = model.audio_positions(inputs["input_ids"])
    first_audio = audio.float().argmax(-1)
    for b in range(2):
        before = slice(0, int(first_audio[b]))
        real_before = inputs["attention_mask"][b, before].bool()
        assert torch.allclose(clean[b, before][real_before], patched[b, before][real_before], atol=1e-6)
        assert (clean[b, audio[b]] - patched[b, audio[b]]).abs().max() > 1e-3


def test_errors(setup):
    model, inputs = setup["model"], setup["hf_inputs"]
    ids = inputs["input_ids"].clone()
    first_audio = int(model.audio_positions(ids)[0].float().argmax())
    ids[0, first_audio] = 1  # one <|AUDIO|> fewer than the clips give
    with pytest.raises(sl.InvalidInputError, match="AUDIO"):
        model(inputs["input_features"], ids, feature_attention_mask=inputs["feature_attention_mask"],
              attention_mask=inputs["attention_mask"])
    with pytest.raises(sl.InvalidInputError, match="frames"):
        model(inputs["input_features"][..., :80], inputs["input_ids"])
    with pytest.raises(sl.InvalidInputError, match="no audio"):
        model(None, inputs["input_ids"])
    with pytest.raises(sl.InvalidInputError, match="placeholders"):
        model.prepare(setup["waves"], ["only one <|AUDIO|>"], chat=False)


def test_hook_names_and_config(setup):
    model = setup["model"]
    names = model.hook_names()
    for name in ["audio_encoder.hook_mel", "audio_encoder.conv1.hook_out", "audio_encoder.blocks.1.hook_resid_post",
                 "audio_encoder.hook_pooled", "audio_encoder.ln_post.hook_normalized", "projector.hook_out",
                 "lm.hook_embed", "lm.blocks.2.attn.hook_rot_q", "lm.blocks.2.attn.hook_rot_k",
                 "lm.blocks.0.mlp.hook_pre_linear", "lm.ln_final.hook_normalized", "hook_logits"]:
        assert name in names, name
    assert names.index("projector.hook_out") < names.index("lm.hook_embed") < names.index("hook_logits")
    cfg = model.cfg
    assert cfg.model_family == "qwen2_audio" and cfg.n_layers == 3 and cfg.d_model == 64
    assert cfg.n_key_value_heads == CONFIGS[setup["kind"]]["num_key_value_heads"]
    assert cfg.tied_unembedding == CONFIGS[setup["kind"]]["tie"]


def test_half_precision_weights_stay_in_their_dtype(setup, tmp_path):
    setup["hf"].to(torch.bfloat16).save_pretrained(str(tmp_path))
    setup["hf"].to(torch.float32)
    for name in ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"):
        (tmp_path / name).write_bytes((setup["folder"] / name).read_bytes())
    model = sl.load(tmp_path)
    assert model.dtype == torch.bfloat16
    inputs = setup["hf_inputs"]
    logits = model(inputs["input_features"], inputs["input_ids"],
                   feature_attention_mask=inputs["feature_attention_mask"], attention_mask=inputs["attention_mask"])
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()
    assert sl.load(tmp_path, dtype="float32").dtype == torch.float32
