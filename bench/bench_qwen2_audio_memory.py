"""Peak resident memory of loading (and running) a Qwen2-Audio-shaped bfloat16 checkpoint with
SpeechLens, relative to the checkpoint's size on disk.

Writes a random checkpoint in HF's Qwen2AudioForConditionalGeneration layout (sharded
safetensors + index, bfloat16) to a temporary folder, then in fresh subprocesses measures
VmHWM (/proc/self/status) of: (a) importing speechlens alone, (b) loading the model, (c) loading
it and running one forward over a 30 s log-mel window plus a short prompt. The loader maps the
shards and keeps bfloat16 weights as zero-copy views, so (b) is mostly the interpreter and
LibTorch, and (c) touches every weight page once: the goal is (c) <= 1.2 x the checkpoint size.
The folder is deleted afterwards.

    PYTHONPATH=python python3 bench/bench_qwen2_audio_memory.py [--lm-layers 6] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import textwrap

import torch


def shapes(audio_layers: int, lm_layers: int, hidden: int, inter: int, heads: int, kv_heads: int, vocab: int):
    """(name, shape) of every tensor of Qwen2AudioForConditionalGeneration, in the released layout."""
    d_audio, audio_ffn, mels, positions = 1280, 5120, 128, 1500
    out = [("audio_tower.conv1.weight", (d_audio, mels, 3)), ("audio_tower.conv1.bias", (d_audio,)),
           ("audio_tower.conv2.weight", (d_audio, d_audio, 3)), ("audio_tower.conv2.bias", (d_audio,)),
           ("audio_tower.embed_positions.weight", (positions, d_audio)),
           ("audio_tower.layer_norm.weight", (d_audio,)), ("audio_tower.layer_norm.bias", (d_audio,))]
    for i in range(audio_layers):
        p = f"audio_tower.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            out.append((p + f"self_attn.{proj}.weight", (d_audio, d_audio)))
            if proj != "k_proj":
                out.append((p + f"self_attn.{proj}.bias", (d_audio,)))
        for norm in ("self_attn_layer_norm", "final_layer_norm"):
            out += [(p + f"{norm}.weight", (d_audio,)), (p + f"{norm}.bias", (d_audio,))]
        out += [(p + "fc1.weight", (audio_ffn, d_audio)), (p + "fc1.bias", (audio_ffn,)),
                (p + "fc2.weight", (d_audio, audio_ffn)), (p + "fc2.bias", (d_audio,))]
    out += [("multi_modal_projector.linear.weight", (hidden, d_audio)), ("multi_modal_projector.linear.bias", (hidden,))]
    head_dim = hidden // heads
    out.append(("language_model.model.embed_tokens.weight", (vocab, hidden)))
    for i in range(lm_layers):
        p = f"language_model.model.layers.{i}."
        out += [(p + "self_attn.q_proj.weight", (hidden, hidden)), (p + "self_attn.q_proj.bias", (hidden,)),
                (p + "self_attn.k_proj.weight", (kv_heads * head_dim, hidden)),
                (p + "self_attn.k_proj.bias", (kv_heads * head_dim,)),
                (p + "self_attn.v_proj.weight", (kv_heads * head_dim, hidden)),
                (p + "self_attn.v_proj.bias", (kv_heads * head_dim,)),
                (p + "self_attn.o_proj.weight", (hidden, hidden)),
                (p + "mlp.gate_proj.weight", (inter, hidden)), (p + "mlp.up_proj.weight", (inter, hidden)),
                (p + "mlp.down_proj.weight", (hidden, inter)),
                (p + "input_layernorm.weight", (hidden,)), (p + "post_attention_layernorm.weight", (hidden,))]
    out += [("language_model.model.norm.weight", (hidden,)), ("language_model.lm_head.weight", (vocab, hidden))]
    return out


def write_checkpoint(folder: pathlib.Path, args) -> int:
    from safetensors.torch import save_file

    tensors = shapes(args.audio_layers, args.lm_layers, args.hidden, args.inter, args.heads, args.kv_heads, args.vocab)
    shard_limit = args.shard_gb * 1e9
    shards, current, size = [], [], 0
    for name, shape in tensors:
        nbytes = 2 * int(torch.Size(shape).numel())
        if current and size + nbytes > shard_limit:
            shards.append(current)
            current, size = [], 0
        current.append((name, shape))
        size += nbytes
    shards.append(current)
    weight_map, total = {}, 0
    g = torch.Generator().manual_seed(0)
    for index, shard in enumerate(shards):
        file = f"model-{index + 1:05d}-of-{len(shards):05d}.safetensors"
        data = {}
        for name, shape in shard:
            if name.endswith("norm.weight"):
                t = torch.ones(shape, dtype=torch.bfloat16)
            else:
                t = (torch.randn(shape, generator=g) * 0.02).to(torch.bfloat16)
            data[name] = t
            weight_map[name] = file
        save_file(data, str(folder / file), metadata={"format": "pt"})
        del data
    total = sum((folder / f).stat().st_size for f in set(weight_map.values()))
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}))
    config = {
        "architectures": ["Qwen2AudioForConditionalGeneration"], "model_type": "qwen2_audio",
        "audio_token_index": 151646,
        "audio_config": {"model_type": "qwen2_audio_encoder", "d_model": 1280, "encoder_layers": args.audio_layers,
                         "encoder_attention_heads": 20, "encoder_ffn_dim": 5120, "num_mel_bins": 128,
                         "max_source_positions": 1500},
        "text_config": {"model_type": "qwen2", "vocab_size": args.vocab, "hidden_size": args.hidden,
                        "intermediate_size": args.inter, "num_hidden_layers": args.lm_layers,
                        "num_attention_heads": args.heads, "num_key_value_heads": args.kv_heads,
                        "rms_norm_eps": 1e-5, "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
                        "eos_token_id": 151645, "torch_dtype": "bfloat16"},
        "torch_dtype": "bfloat16",
    }
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    return total


PROBE = textwrap.dedent("""
    import json, sys, time
    import torch
    import speechlens as sl

    def hwm():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    mode, folder = sys.argv[1], sys.argv[2]
    out = {"baseline": hwm()}
    if mode != "import":
        t = time.perf_counter()
        model = sl.load(folder)
        out["load_s"] = time.perf_counter() - t
        out["dtype"] = str(model.dtype)
        out["after_load"] = hwm()
        if mode == "forward":
            torch.set_num_threads(2)
            core = model._core
            n = sl._C.models.qwen2_audio_token_count(160)  # a 1.6 s clip
            ids = torch.tensor([[151644, 872, 198, 151647] + [151646] * n + [151648, 3838, 374, 419, 30, 151645]])
            mel = torch.randn(1, 128, 3000) * 0.1
            t = time.perf_counter()
            with torch.no_grad():
                logits = model(mel, ids, feature_lengths=torch.tensor([160]))
            out["forward_s"] = time.perf_counter() - t
            out["logits_finite"] = bool(torch.isfinite(logits.float()).all())
            out["after_forward"] = hwm()
    print(json.dumps(out))
""")


def probe(mode: str, folder: pathlib.Path) -> dict:
    env = dict(os.environ)
    result = subprocess.run([sys.executable, "-c", PROBE, mode, str(folder)], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"probe {mode} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--audio-layers", type=int, default=4)
    parser.add_argument("--lm-layers", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--inter", type=int, default=11008)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--kv-heads", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=156032)
    parser.add_argument("--shard-gb", type=float, default=1.0)
    parser.add_argument("--keep", type=pathlib.Path, default=None, help="write here and keep it")
    args = parser.parse_args()

    folder = args.keep or pathlib.Path(tempfile.mkdtemp(prefix="qwen2audio-mem-", dir="/tmp"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        size = write_checkpoint(folder, args)
        shards = len(list(folder.glob("*.safetensors")))
        gib = 2**30
        print(f"checkpoint: {size / gib:.2f} GiB bfloat16 in {shards} shards ({folder})")
        base = probe("import", folder)["baseline"]
        load = probe("load", folder)
        run = probe("forward", folder)
        print(f"import speechlens alone      : VmHWM {base / gib:.2f} GiB")
        print(f"load ({load['load_s']:.2f} s, {load['dtype']}) : VmHWM {load['after_load'] / gib:.2f} GiB "
              f"= {load['after_load'] / size:.2f} x checkpoint")
        print(f"load + forward ({run['forward_s']:.1f} s)   : VmHWM {run['after_forward'] / gib:.2f} GiB "
              f"= {run['after_forward'] / size:.2f} x checkpoint "
              f"({(run['after_forward'] - base) / size:.2f} x net of the import); finite logits: {run['logits_finite']}")
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
