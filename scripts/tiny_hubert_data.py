"""Synthetic spoken digits/commands corpus for the tiny HuBERT CTC model.

Shared by scripts/train_tiny_hubert.py, scripts/eval_tiny_hubert.py and
tests/python/test_tiny_hubert.py so that training, evaluation and the test all draw from
exactly the same generator. Everything is deterministic given a seed: the utterance
specifications come from random.Random(seed) and espeak-ng itself is deterministic.

The split is by speaker *and* by speaking rate: the held-out set uses espeak-ng voices and
variants that never occur in training, at speaking rates outside the training range.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import random
import shutil
import struct
import subprocess
from typing import Iterable, Sequence

import numpy as np
from scipy.signal import resample_poly

SAMPLE_RATE = 16_000
ESPEAK_SAMPLE_RATE = 22_050

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
COMMANDS = ("yes", "no", "up", "down", "left", "right", "stop", "go", "on", "off")
WORDS = DIGITS + COMMANDS

# espeak-ng "language+variant" voices. Accents (gmw/en-*) and variants (!v/*) both differ
# between the two lists, so a held-out voice is new in accent and in timbre.
TRAIN_VOICES = (
    "en-us",
    "en-gb",
    "en-gb-x-rp+f2",
    "en-gb-scotland+m3",
    "en-029+f3",
    "en-us-nyc+m5",
    "en-gb-x-gbclan+f4",
    "en-us+Andy",
    "en+klatt",
    "en-gb+Annie",
)
HELDOUT_VOICES = (
    "en-gb-x-gbcwmd+m7",
    "en-us+f5",
    "en-029+Alex",
)

# Words per minute. The held-out rates lie on both sides of the training range.
TRAIN_SPEED_RANGE = (130, 185)
HELDOUT_SPEED_RANGES = ((110, 124), (192, 210))
PITCH_RANGE = (25, 75)

MAX_WORDS_PER_UTTERANCE = 4

PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
WORD_DELIMITER = "|"


@dataclasses.dataclass(frozen=True)
class UtteranceSpec:
    text: str
    voice: str
    speed: int
    pitch: int


def build_vocab() -> dict[str, int]:
    """Character CTC vocabulary: <pad> is the blank (id 0), '|' separates words."""
    letters = sorted({ch for word in WORDS for ch in word})
    vocab = {PAD_TOKEN: 0, UNK_TOKEN: 1, WORD_DELIMITER: 2}
    for letter in letters:
        vocab[letter] = len(vocab)
    return vocab


def random_text(rng: random.Random) -> str:
    n_words = rng.randint(1, MAX_WORDS_PER_UTTERANCE)
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def train_specs(n: int, seed: int) -> list[UtteranceSpec]:
    rng = random.Random(seed)
    return [
        UtteranceSpec(
            text=random_text(rng),
            voice=TRAIN_VOICES[i % len(TRAIN_VOICES)],
            speed=rng.randint(*TRAIN_SPEED_RANGE),
            pitch=rng.randint(*PITCH_RANGE),
        )
        for i in range(n)
    ]


def heldout_specs(n: int, seed: int) -> list[UtteranceSpec]:
    """Unseen voices at unseen speaking rates."""
    rng = random.Random(seed)
    specs = []
    for i in range(n):
        low, high = HELDOUT_SPEED_RANGES[i % len(HELDOUT_SPEED_RANGES)]
        specs.append(
            UtteranceSpec(
                text=random_text(rng),
                voice=HELDOUT_VOICES[i % len(HELDOUT_VOICES)],
                speed=rng.randint(low, high),
                pitch=rng.randint(*PITCH_RANGE),
            )
        )
    return specs


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def _parse_wav_int16(data: bytes) -> tuple[int, np.ndarray]:
    """Reads espeak-ng's --stdout WAV, whose RIFF/data sizes are placeholders (0x7fffffff)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("espeak-ng did not produce a RIFF/WAVE stream")
    offset = 12
    sample_rate = None
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        (chunk_size,) = struct.unpack("<I", data[offset + 4 : offset + 8])
        if chunk_id == b"fmt ":
            channels, sample_rate, bits = (
                struct.unpack("<H", data[offset + 10 : offset + 12])[0],
                struct.unpack("<I", data[offset + 12 : offset + 16])[0],
                struct.unpack("<H", data[offset + 22 : offset + 24])[0],
            )
            if channels != 1 or bits != 16:
                raise ValueError(f"expected mono 16-bit audio, got {channels} ch {bits} bit")
        elif chunk_id == b"data":
            if sample_rate is None:
                raise ValueError("WAV data chunk precedes its fmt chunk")
            payload = data[offset + 8 :]
            payload = payload[: len(payload) // 2 * 2]
            return sample_rate, np.frombuffer(payload, dtype="<i2")
        offset += 8 + chunk_size
    raise ValueError("WAV stream has no data chunk")


def synthesize(spec: UtteranceSpec) -> np.ndarray:
    """One utterance as float32 in [-1, 1] at 16 kHz."""
    result = subprocess.run(
        ["espeak-ng", "-v", spec.voice, "-s", str(spec.speed), "-p", str(spec.pitch), "--stdout", spec.text],
        check=True,
        capture_output=True,
    )
    sample_rate, samples = _parse_wav_int16(result.stdout)
    if sample_rate != ESPEAK_SAMPLE_RATE:
        raise ValueError(f"espeak-ng produced {sample_rate} Hz, expected {ESPEAK_SAMPLE_RATE}")
    # 22050 -> 16000 Hz is the exact ratio 320/441.
    wave = resample_poly(samples.astype(np.float32) / 32768.0, 320, 441)
    return wave.astype(np.float32)


def _specs_key(specs: Sequence[UtteranceSpec]) -> str:
    payload = json.dumps([dataclasses.astuple(s) for s in specs]).encode()
    version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout
    return hashlib.sha256(payload + version.encode()).hexdigest()[:16]


def synthesize_all(specs: Sequence[UtteranceSpec], cache_dir: pathlib.Path | None = None) -> list[np.ndarray]:
    """Synthesizes every spec, reusing an .npz cache (keyed by the specs) when given a dir."""
    cache_file = None
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        cache_file = cache_dir / f"corpus-{_specs_key(specs)}.npz"
        if cache_file.exists():
            with np.load(cache_file) as archive:
                flat, lengths = archive["samples"], archive["lengths"]
            return [w.astype(np.float32) / 32767.0 for w in np.split(flat, np.cumsum(lengths)[:-1])]
    waves = [synthesize(spec) for spec in specs]
    if cache_file is not None:
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp.npz")
        flat = np.concatenate([np.clip(np.round(w * 32767.0), -32767, 32767).astype(np.int16) for w in waves])
        np.savez(tmp, samples=flat, lengths=np.array([len(w) for w in waves], dtype=np.int64))
        tmp.replace(cache_file)
    return waves


def add_noise(wave: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Additive white Gaussian noise at the given signal-to-noise ratio (signal power over
    the whole clip)."""
    signal_power = float(np.mean(wave**2)) + 1e-10
    noise = rng.standard_normal(len(wave)).astype(np.float32)
    noise *= np.sqrt(signal_power / 10 ** (snr_db / 10))
    return (wave + noise).astype(np.float32)


HELDOUT_SNR_DB = 30.0
# Seeds of the evaluation sets; the training corpus uses the training script's --seed (0).
HELDOUT_SEED = 1234
# Fresh sentences from the *training* voices and rates, to compare against the held-out WER.
TRAIN_CHECK_SEED = 4321


def heldout_waves(specs: Sequence[UtteranceSpec], seed: int, cache_dir: pathlib.Path | None = None) -> list[np.ndarray]:
    """Held-out audio: clean synthesis plus a fixed, seeded 30 dB noise floor."""
    rng = np.random.default_rng(seed)
    return [add_noise(w, HELDOUT_SNR_DB, rng) for w in synthesize_all(specs, cache_dir)]


def transcribe_greedy(model, processor, waves: Sequence[np.ndarray]) -> list[str]:
    """Greedy CTC with a Hugging Face model, one utterance at a time: the group-normed first
    conv normalises over time, so padding a batch would change what each utterance sees."""
    import torch

    model.eval()
    texts = []
    with torch.no_grad():
        for wave in waves:
            inputs = processor(wave, sampling_rate=SAMPLE_RATE, return_tensors="pt")
            logits = model(inputs.input_values, attention_mask=inputs.attention_mask).logits
            texts.append(processor.batch_decode(logits.argmax(-1))[0])
    return texts


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edit distance in words, number of reference words)."""
    ref, hyp = reference.split(), hypothesis.split()
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, start=1):
        current = [i] + [0] * len(hyp)
        for j, hyp_word in enumerate(hyp, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word))
        previous = current
    return previous[-1], len(ref)


def word_error_rate(references: Iterable[str], hypotheses: Iterable[str]) -> float:
    errors = total = 0
    for ref, hyp in zip(references, hypotheses, strict=True):
        e, n = word_errors(ref, hyp)
        errors += e
        total += n
    return errors / max(total, 1)
