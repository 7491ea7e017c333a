"""ActivationCache: a dict of torch tensors with TransformerLens's conveniences.

Keys are full hook names (``"encoder.blocks.3.hook_resid_post"``). The TL shorthand
``cache["resid_post", 3]`` reads the encoder stack of Whisper and the only stack of HuBERT;
``cache["resid_post", 3, "decoder"]`` names the stack explicitly. A shorthand that does not start
with ``hook_`` or contain a dot is completed as in TransformerLens (``"pattern"`` ->
``attn.hook_pattern``, ``"normalized", "ln1"``-style is written ``"ln1.hook_normalized"``).
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch

# TransformerLens short names -> the block-relative hook name.
_BLOCK_SHORTHAND = {
    "resid_pre": "hook_resid_pre",
    "resid_mid": "hook_resid_mid",
    "resid_cross": "hook_resid_cross",
    "resid_post": "hook_resid_post",
    "attn_out": "hook_attn_out",
    "cross_attn_out": "hook_cross_attn_out",
    "mlp_out": "hook_mlp_out",
    "q": "attn.hook_q",
    "k": "attn.hook_k",
    "v": "attn.hook_v",
    "z": "attn.hook_z",
    "rot_q": "attn.hook_rot_q",
    "rot_k": "attn.hook_rot_k",
    "pattern": "attn.hook_pattern",
    "attn": "attn.hook_pattern",
    "attn_scores": "attn.hook_attn_scores",
    "scores": "attn.hook_attn_scores",
    "pre": "mlp.hook_pre",
    "post": "mlp.hook_post",
    "pre_linear": "mlp.hook_pre_linear",
}


class ActivationCache:
    """Activations recorded by ``run_with_cache``; behaves like a read-only dict."""

    def __init__(self, cache_dict: dict[str, torch.Tensor], model=None, default_stack: str = "encoder",
                 steps: dict[str, list[torch.Tensor]] | None = None,
                 lengths: dict[str, torch.Tensor | None] | None = None, removed_batch_dim: bool = False,
                 trimmed: bool = False):
        self.cache_dict = cache_dict
        self.model = model
        self.default_stack = default_stack
        self._steps = steps or {}
        self._lengths = lengths or {}
        self._removed_batch_dim = removed_batch_dim

    # -- padding ----------------------------------------------------------------------------
    def lengths(self, key) -> torch.Tensor | None:
        """Valid lengths [batch] of an activation along its main time axis (in the hook's own
        units: mel frames, encoder frames, samples, tokens), as the forward knew them; None when
        every position is real."""
        name = self.resolve_name(key)
        self[name]  # KeyError for names not in the cache
        return self._lengths.get(name)

    def mask(self, key) -> torch.Tensor | None:
        """[batch, positions] bool mask of the real positions along the activation's main time
        axis (the positions of the cached tensor, after any trimming), or None when all are real."""
        name = self.resolve_name(key)
        lengths = self.lengths(name)
        if lengths is None:
            return None
        tensor = self[name]
        dim = 2 if name.endswith(("hook_pattern", "hook_attn_scores")) else 1
        if self._removed_batch_dim:
            dim -= 1
        positions = tensor.shape[dim] if tensor.dim() > dim else 0
        mask = torch.arange(positions).unsqueeze(0) < lengths.unsqueeze(1)
        return mask[0] if self._removed_batch_dim else mask

    # -- dict behaviour ---------------------------------------------------------------------
    def __getitem__(self, key) -> torch.Tensor:
        name = self.resolve_name(key)
        if name not in self.cache_dict:
            if name in self._steps:
                raise KeyError(f"{name!r} fired once per decode step; read it with cache.steps({name!r})")
            near = _nearest(name, list(self.cache_dict))
            raise KeyError(f"{name!r} is not in the cache ({len(self.cache_dict)} entries). Nearest: {near}")
        return self.cache_dict[name]

    def __contains__(self, key) -> bool:
        try:
            return self.resolve_name(key) in self.cache_dict
        except (KeyError, ValueError):
            return False

    def __len__(self) -> int:
        return len(self.cache_dict)

    def __iter__(self) -> Iterator[str]:
        return iter(self.cache_dict)

    def keys(self):
        return self.cache_dict.keys()

    def values(self):
        return self.cache_dict.values()

    def items(self):
        return self.cache_dict.items()

    def get(self, key, default=None):
        return self[key] if key in self else default

    def steps(self, name: str) -> list[torch.Tensor]:
        """Every firing of a hook that ran once per decode step (generation)."""
        if name in self._steps:
            return self._steps[name]
        return [self[name]]

    def to(self, device) -> "ActivationCache":
        return ActivationCache({k: v.to(device) for k, v in self.cache_dict.items()}, self.model,
                               self.default_stack, {k: [t.to(device) for t in v] for k, v in self._steps.items()})

    def __repr__(self) -> str:
        return f"ActivationCache with keys {list(self.cache_dict)}"

    # -- names ------------------------------------------------------------------------------
    def resolve_name(self, key) -> str:
        """Full hook name for a key: a full name, or TL's (name, layer[, stack]) shorthand."""
        if isinstance(key, str):
            return key
        if not isinstance(key, tuple) or not 1 <= len(key) <= 3:
            raise KeyError(f"cache keys are names or (name, layer[, stack]) tuples, got {key!r}")
        short, layer = key[0], key[1] if len(key) > 1 else None
        stack = key[2] if len(key) > 2 else self.default_stack
        stack = self._prefix(stack)
        if layer is None:
            return short if "." in short else f"{stack}.{short}"
        relative = _BLOCK_SHORTHAND.get(short, short)
        if not relative.startswith("hook_") and ".hook_" not in relative:
            relative = f"hook_{relative}"
        if layer < 0:
            layer += self.n_layers(stack)
        return f"{stack}.blocks.{layer}.{relative}"

    def _prefix(self, stack: str | None) -> str:
        """The hook prefix of a stack named by its name or prefix ("encoder" is Qwen2-Audio's
        "audio_encoder")."""
        stack = stack or self.default_stack
        if self.model is not None and hasattr(self.model, "stack_prefix"):
            try:
                return self.model.stack_prefix(stack)
            except ValueError:
                return stack
        return stack

    def n_layers(self, stack: str | None = None) -> int:
        stack = self._prefix(stack)
        prefix = f"{stack}.blocks."
        layers = {int(k[len(prefix):].split(".")[0]) for k in self.cache_dict if k.startswith(prefix)}
        if self.model is not None:
            layers |= {int(k[len(prefix):].split(".")[0]) for k in self.model.hook_names() if k.startswith(prefix)}
        return max(layers) + 1 if layers else 0

    # -- TransformerLens conveniences -------------------------------------------------------
    def stack_activation(self, activation_name: str, layer: int = -1, sublayer_type: str | None = None,
                         stack: str | None = None) -> torch.Tensor:
        """[n_layers, ...] of one block activation across layers 0..layer-1 (all when -1)."""
        stack = self._prefix(stack)
        n = self.n_layers(stack) if layer == -1 else layer
        name = activation_name if sublayer_type is None else f"{sublayer_type}.{activation_name}"
        return torch.stack([self[name, i, stack] for i in range(n)], dim=0)

    def accumulated_resid(self, layer: int | None = None, incl_mid: bool = False, apply_ln: bool = False,
                          stack: str | None = None, return_labels: bool = False):
        """The residual stream entering each layer (and the final output): [n, batch, pos, d_model].

        With ``layer`` given, stops before that layer. ``apply_ln`` applies the stack's final
        norm to every entry (as a logit / encoder lens would).
        """
        stack = self._prefix(stack)
        n = self.n_layers(stack) if layer is None else layer
        parts, labels = [], []
        for i in range(n):
            parts.append(self["resid_pre", i, stack])
            labels.append(f"{i}_pre")
            if incl_mid:
                parts.append(self["resid_mid", i, stack])
                labels.append(f"{i}_mid")
        if layer is None or layer == self.n_layers(stack):
            parts.append(self["resid_post", self.n_layers(stack) - 1, stack])
            labels.append("final_post")
        out = torch.stack(parts, dim=0)
        if apply_ln:
            out = self.apply_ln_to_stack(out, stack=stack)
        return (out, labels) if return_labels else out

    def decompose_resid(self, layer: int | None = None, mode: str = "all", incl_embeds: bool = True,
                        stack: str | None = None, return_labels: bool = False):
        """The residual stream as the sum of its parts: embeddings, then each layer's attention
        (and cross-attention) and MLP outputs. Exact for pre-norm stacks (Whisper, Qwen2)."""
        stack = self._prefix(stack)
        n = self.n_layers(stack) if layer is None else layer
        parts, labels = [], []
        if incl_embeds:
            first = self["resid_pre", 0, stack]
            parts.append(first)
            labels.append("embed")
        for i in range(n):
            if mode in ("all", "attn"):
                parts.append(self["attn_out", i, stack])
                labels.append(f"{i}_attn_out")
                cross = f"{stack}.blocks.{i}.hook_cross_attn_out"
                if cross in self.cache_dict:
                    parts.append(self.cache_dict[cross])
                    labels.append(f"{i}_cross_attn_out")
            if mode in ("all", "mlp"):
                parts.append(self["mlp_out", i, stack])
                labels.append(f"{i}_mlp_out")
        out = torch.stack(parts, dim=0)
        return (out, labels) if return_labels else out

    def _final_norm(self, stack: str | None) -> str:
        if self.model is None:
            raise ValueError("this needs the model the cache came from")
        prefix = self._prefix(stack)
        for info in self.model.stacks():
            if info["prefix"] == prefix:
                if not info["final_norm"]:
                    raise ValueError(f"the {prefix} stack ends without a final norm")
                return info["final_norm"]
        raise ValueError(f"the model has no stack {stack!r}")

    def apply_ln_to_stack(self, residual_stack: torch.Tensor, layer: int | None = None, mlp_input: bool = False,
                          pos_slice=None, stack: str | None = None) -> torch.Tensor:
        """TransformerLens's apply_ln_to_stack: centre each component (LayerNorm) and divide by the
        norm's cached scale (``<norm>.hook_scale`` from this cache's forward), so the normed parts
        add up to the normed residual stream exactly (linear, unlike renormalising each part).
        ``layer`` None (or n_layers) uses the stack's final norm, else block ``layer``'s ln1 (ln2
        with ``mlp_input``). The norm's weight and bias are not applied (TransformerLens folds them
        into the unembedding; ``logit_attrs`` does the same). Cache the scale:
        ``names_filter=[..., "decoder.ln_final.hook_scale"]``."""
        prefix = self._prefix(stack)
        if layer is None or layer == self.n_layers(prefix) or layer == -1:
            scale_name = f"{self._final_norm(stack)}.hook_scale"
        else:
            scale_name = f"{prefix}.blocks.{layer}.{'ln2' if mlp_input else 'ln1'}.hook_scale"
        if scale_name not in self.cache_dict:
            raise KeyError(f"apply_ln_to_stack needs {scale_name!r} in the cache: add it to names_filter")
        scale = self.cache_dict[scale_name]
        if pos_slice is not None:
            from .model import _apply_pos_slice

            scale = _apply_pos_slice(scale_name, scale, pos_slice)
        if self.model is not None and (layer is None or layer == -1 or layer == self.n_layers(prefix)):
            from . import _C

            return _C.analysis.apply_ln_to_stack(self.model._core, self._stack_name(stack), residual_stack, scale)
        # Block norms: RMSNorm in the language model of Qwen2-Audio, LayerNorm elsewhere.
        centred = residual_stack
        if self._stack_name(stack) != "lm":
            centred = residual_stack - residual_stack.mean(-1, keepdim=True)
        return centred / scale

    def logit_attrs(self, residual_stack: torch.Tensor, tokens, incorrect_tokens=None, pos_slice=None,
                    stack: str | None = None) -> torch.Tensor:
        """Direct logit attribution (TransformerLens's logit_attrs): each component's contribution
        to the logit of ``tokens`` (minus ``incorrect_tokens``) through the final norm with its
        cached scale and the head: [components, batch(, positions)]. Add ``bias_logit_attrs`` and
        the components sum to the model's logits."""
        from . import _C

        stack_name = self._stack_name(stack)
        scaled = self.apply_ln_to_stack(residual_stack, pos_slice=pos_slice, stack=stack)
        tokens = torch.as_tensor(tokens)
        incorrect = None if incorrect_tokens is None else torch.as_tensor(incorrect_tokens)
        return _C.analysis.logit_attrs(self.model._core, stack_name, scaled, tokens, incorrect)

    def bias_logit_attrs(self, tokens, incorrect_tokens=None, stack: str | None = None) -> torch.Tensor:
        """The final norm's bias read by the head for ``tokens``: the part of the logits no
        component carries (zero for RMSNorm)."""
        from . import _C

        incorrect = None if incorrect_tokens is None else torch.as_tensor(incorrect_tokens)
        return _C.analysis.bias_logit_attrs(self.model._core, self._stack_name(stack), torch.as_tensor(tokens),
                                            incorrect)

    def stack_head_results(self, layer: int = -1, return_labels: bool = False, incl_remainder: bool = False,
                           pos_slice=None, apply_ln: bool = False, stack: str | None = None):
        """Each attention head's output (``attn.hook_result``, TransformerLens's use_attn_result;
        cache it with names_filter) for layers < ``layer`` (all when -1): [layers * heads, batch,
        pos, d_model], labels ``L{l}H{h}``. ``incl_remainder`` adds the residual stream minus the
        heads' sum."""
        prefix = self._prefix(stack)
        n = self.n_layers(prefix) if layer == -1 else layer
        parts, labels = [], []
        for i in range(n):
            name = f"{prefix}.blocks.{i}.attn.hook_result"
            if name not in self.cache_dict:
                raise KeyError(f"stack_head_results needs {name!r} in the cache: cache 'attn.hook_result' "
                               "(computed only when hooked)")
            result = self.cache_dict[name]  # [batch, pos, heads, d_model]
            for h in range(result.shape[2]):
                parts.append(result[:, :, h])
                labels.append(f"L{i}H{h}")
        out = torch.stack(parts, dim=0)
        if pos_slice is not None:
            from .model import _apply_pos_slice

            out = torch.stack([_apply_pos_slice("x", p, pos_slice) for p in out])
        if incl_remainder:
            resid = self[f"{prefix}.blocks.{n - 1}.hook_resid_post"] if n > 0 else self["resid_pre", 0, prefix]
            if pos_slice is not None:
                from .model import _apply_pos_slice

                resid = _apply_pos_slice("x", resid, pos_slice)
            out = torch.cat([out, (resid - out.sum(0)).unsqueeze(0)], dim=0)
            labels.append("remainder")
        if apply_ln:
            out = self.apply_ln_to_stack(out, pos_slice=None, stack=stack)
        return (out, labels) if return_labels else out

    def _stack_name(self, stack: str | None) -> str:
        prefix = self._prefix(stack)
        for info in self.model.stacks():
            if info["prefix"] == prefix:
                return info["stack"]
        return prefix


def _nearest(name: str, names: list[str], count: int = 5) -> list[str]:
    import difflib

    return difflib.get_close_matches(name, names, n=count, cutoff=0.0)
