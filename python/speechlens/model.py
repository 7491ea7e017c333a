"""The Python face of the hooked models: TransformerLens's vocabulary over the C++ contract.

Every method here composes calls into ``speechlens._C``; hooks, caching and the forward itself
run in C++, and all hook state lives in the C++ registry. A Python hook function
``fn(tensor, hook)`` is called with ``hook=`` as a keyword, exactly as TransformerLens calls hook
functions, so TL hook functions work unchanged.

Hooks passed to ``run_with_hooks`` / ``run_with_cache`` belong to that one call: another thread
running the same model, or a model call made from inside a hook, never sees them. Hooks added
with ``add_hook`` or inside ``with model.hooks(...)`` are attached to the model and seen by every
call (in every thread) until removed.
"""
from __future__ import annotations

import contextlib
import json
import re
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Sequence

import torch

from . import _C
from ._inputs import ModelInputs, as_waves
from .cache import ActivationCache

NamesFilter = str | re.Pattern | Callable[[str], bool] | Sequence[str] | None
HookSpec = tuple[Any, Callable]


class Config(SimpleNamespace):
    """Model configuration with attribute and dict access (``cfg.n_layers``, ``cfg["d_model"]``)."""

    def __getitem__(self, key):
        return getattr(self, key)

    def __contains__(self, key):
        return hasattr(self, key)

    def to_dict(self) -> dict:
        return dict(vars(self))


class HookPointProxy:
    """``model.hook_dict[name]``: one hook point, with TL's add_hook / remove_hooks."""

    def __init__(self, model: "HookedModel", name: str):
        self.model, self.name = model, name

    def add_hook(self, hook: Callable, dir: str = "fwd", is_permanent: bool = False):
        return self.model.add_hook(self.name, hook, dir=dir, is_permanent=is_permanent)

    def remove_hooks(self, dir: str = "both", including_permanent: bool = False) -> int:
        """Removes this point's hooks of direction ``dir`` ("fwd", "bwd" or "both")."""
        return self.model._core.remove_hooks_where(re.compile("^" + re.escape(self.name) + "$"), dir,
                                                   including_permanent)

    def __repr__(self) -> str:
        return f"HookPoint({self.name!r})"


class HookedModel:
    """Common behaviour of every hooked speech model (use ``speechlens.load`` to make one)."""

    #: which stack ``cache["resid_post", 3]`` reads when no stack is named
    default_stack = "encoder"

    def __init__(self, core: _C.models.HookedModel, path: str | None = None):
        self._core = core
        self.path = path if path is not None else str(core.checkpoint_dir)
        self.cfg = Config(**json.loads(core.config_json()))

    # -- introspection ----------------------------------------------------------------------
    @property
    def family(self) -> str:
        return self._core.family

    def hook_names(self) -> list[str]:
        """Every hook point name, in the order a forward visits them."""
        return list(self._core.hook_names())

    @property
    def hook_dict(self) -> dict[str, HookPointProxy]:
        return {name: HookPointProxy(self, name) for name in self._core.hook_names()}

    def resolve_hook_names(self, names_filter: NamesFilter) -> list[str]:
        """The hook names a filter selects: a name, a glob, a compiled regex, a callable, or a list
        of those. A name or filter that matches nothing raises HookNameError with the nearest names."""
        if names_filter is None:
            return self.hook_names()
        return list(self._core.resolve(names_filter))

    def stacks(self) -> list[dict]:
        """The model's stacks: [{stack, prefix, n_layers, d_model, causal, has_head, unit, final_norm}]."""
        return list(self._core.stacks())

    def stack_prefix(self, stack: str | None = None) -> str:
        """The hook-name prefix of a stack named by its name or prefix (default: ``default_stack``)."""
        wanted = stack or self.default_stack
        for s in self.stacks():
            if wanted in (s["stack"], s["prefix"]):
                return s["prefix"]
        raise ValueError(f"this {self.family} model has no stack {wanted!r} "
                         f"(its stacks: {[s['prefix'] for s in self.stacks()]})")

    @property
    def device(self) -> torch.device:
        return self._core.device

    @property
    def dtype(self) -> torch.dtype:
        return self._core.dtype

    @property
    def sampling_rate(self) -> int:
        return self._core.sampling_rate

    def to(self, device=None, dtype=None) -> "HookedModel":
        self._core.to(torch.device(device) if isinstance(device, str) else device, _as_dtype(dtype))
        return self

    # -- hooks attached to the model --------------------------------------------------------
    def add_hook(self, name: NamesFilter, hook: Callable, dir: str = "fwd", is_permanent: bool = False) -> list[int]:
        """Attaches ``hook(tensor, hook=ctx)`` at every point ``name`` selects; returns the ids."""
        if not callable(hook):
            raise TypeError(f"a hook must be callable, got {type(hook).__name__}")
        return list(self._core.add_hook(name, hook, dir, is_permanent))

    def remove_hooks(self, ids: Iterable[int]) -> None:
        """Removes the hooks with these ids (unknown or already removed ids are ignored)."""
        self._core.remove_hooks(list(ids))

    def reset_hooks(self, including_permanent: bool = False, direction: str = "both") -> None:
        """Removes every hook of ``direction`` (the permanent ones too when asked)."""
        self._core.remove_hooks_where(None, direction, including_permanent)

    def list_hooks(self) -> list[tuple[int, str, str, bool]]:
        """[(id, point, 'fwd' | 'bwd', permanent)] of every hook attached to the model."""
        return list(self._core.list_hooks())

    @contextlib.contextmanager
    def hooks(self, fwd_hooks: Sequence[HookSpec] = (), bwd_hooks: Sequence[HookSpec] = (),
              reset_hooks_end: bool = True):
        """Context manager: the hooks are attached to the model inside the block and removed on
        exit, also when the block raises. (They are seen by every call in the block, from any
        thread; for hooks of one call use ``run_with_hooks``.)"""
        added: list[int] = []
        try:
            for name, fn in fwd_hooks:
                added += self.add_hook(name, fn, "fwd")
            for name, fn in bwd_hooks:
                added += self.add_hook(name, fn, "bwd")
            yield self
        finally:
            if reset_hooks_end:
                self.remove_hooks(added)

    # -- inputs -----------------------------------------------------------------------------
    def make_inputs(self, *args, **kwargs) -> ModelInputs:
        """The ModelInputs ``model(*args, **kwargs)`` runs on (each family documents its arguments)."""
        raise NotImplementedError

    def prepare(self, wave, sampling_rate: int | None = None) -> ModelInputs:
        """Raw audio -> the model's inputs (its own front end, padding, valid lengths and default
        prompt). ``wave``: a path, a 1-D wave, a [B, T] batch, a numpy array (integer PCM is
        scaled) or a list of those; ``sampling_rate``: their rate (resampled to the model's)."""
        clips, rate, _ = as_waves(wave, sampling_rate, self.sampling_rate)
        return self._core.prepare(clips, rate)

    # -- running ----------------------------------------------------------------------------
    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self._core.run(self.make_inputs(*args, **kwargs))

    def __call__(self, *args, **kwargs) -> torch.Tensor:
        return self.forward(*args, **kwargs)

    def run(self, inputs, fwd_hooks: Sequence[HookSpec] = (), bwd_hooks: Sequence[HookSpec] = (),
            stop_at: str | None = None, start_at: str | None = None, start_value: torch.Tensor | None = None,
            encoder_output: torch.Tensor | None = None) -> torch.Tensor:
        """One forward of ``inputs`` (ModelInputs or a dict) with the contract's run options:
        hooks for this call only, ``stop_at`` (a hook name: return its activation, nothing after it
        runs), ``start_at`` / ``start_value`` (resume at a block's residual stream, skipping what
        comes before), ``encoder_output`` (audio states to use instead of running the encoder)."""
        from ._inputs import as_inputs

        return self._core.run(as_inputs(self, inputs), list(fwd_hooks), list(bwd_hooks), stop_at, start_at,
                              start_value, encoder_output)

    def run_with_hooks(self, *model_args, fwd_hooks: Sequence[HookSpec] = (), bwd_hooks: Sequence[HookSpec] = (),
                       reset_hooks_end: bool = True, clear_contexts: bool = False, **model_kwargs):
        """One forward with hooks for this call only (backward hooks fire when its output is
        differentiated, whenever that happens). With ``reset_hooks_end=False`` the hooks are
        attached to the model instead and stay, as in TransformerLens."""
        inputs = self.make_inputs(*model_args, **model_kwargs)
        if not reset_hooks_end:
            for name, fn in fwd_hooks:
                self.add_hook(name, fn, "fwd")
            for name, fn in bwd_hooks:
                self.add_hook(name, fn, "bwd")
            return self._core.run(inputs)
        return self._core.run(inputs, list(fwd_hooks), list(bwd_hooks))

    def stop_at_layer_hook(self, layer: int, stack: str | None = None) -> str:
        """The hook name ``stop_at_layer=layer`` ends at: the residual stream entering block
        ``layer`` of the stack, or leaving its last block for ``layer == n_layers`` (negative
        layers count from the end, as in TransformerLens)."""
        prefix = self.stack_prefix(stack)
        n = next(s["n_layers"] for s in self.stacks() if s["prefix"] == prefix)
        if layer < 0:
            layer += n
        if not 0 <= layer <= n:
            raise ValueError(f"stop_at_layer={layer} is out of range for {prefix} with {n} layers (0..{n})")
        return f"{prefix}.blocks.{layer}.hook_resid_pre" if layer < n else f"{prefix}.blocks.{n - 1}.hook_resid_post"

    def run_with_cache(self, *model_args, names_filter: NamesFilter = None, device=None,
                       remove_batch_dim: bool = False, incl_bwd: bool = False, pos_slice=None,
                       stop_at_layer: int | None = None, dtype=None, max_bytes: int | None = None,
                       trim_padding: bool = False, backward_metric: Callable | None = None,
                       return_cache_object: bool = True, stop_at: str | None = None,
                       fwd_hooks: Sequence[HookSpec] = (), **model_kwargs):
        """One forward that records activations; returns ``(output, cache)``.

        The recording hooks run in C++ (no Python call per activation). ``incl_bwd`` also
        records gradients (keys ``name + "_grad"``) of ``backward_metric(output)``, or of the
        output itself when it is a scalar. ``stop_at_layer=n`` ends the forward before block
        ``n`` of the default stack (after its last block for ``n == n_layers``: an encoder-only
        run) and returns the residual stream there instead of logits; ``stop_at`` names any hook.
        The cache records each activation's valid lengths (``cache.lengths``, ``cache.mask``).
        """
        inputs = self.make_inputs(*model_args, **model_kwargs)
        names = self.resolve_hook_names(names_filter)
        if max_bytes is not None and max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        store_args = dict(detach=True, device=_device_str(device), dtype=_as_dtype(dtype),
                          remove_batch_dim=remove_batch_dim, trim_padding=trim_padding, max_bytes=max_bytes)
        store = _C.hooks.ActivationCacheStore(**store_args)
        grad_store = _C.hooks.ActivationCacheStore(**store_args) if incl_bwd else None
        if stop_at_layer is not None:
            if stop_at is not None:
                raise ValueError("give stop_at or stop_at_layer, not both")
            stop_at = self.stop_at_layer_hook(stop_at_layer)
        with torch.enable_grad() if incl_bwd else contextlib.nullcontext():
            output = self._core.run_with_cache(inputs, names, store, names if incl_bwd else None, grad_store,
                                               list(fwd_hooks), None, stop_at)
            if incl_bwd:
                target = backward_metric(output) if backward_metric is not None else output
                if target.numel() != 1:
                    raise ValueError("incl_bwd needs a scalar: pass backward_metric=fn(logits) -> scalar")
                target.backward()
        cache, steps, lengths = _to_cache_dict(store, pos_slice)
        if grad_store is not None:
            grads, _, _ = _to_cache_dict(grad_store, pos_slice)
            cache.update({f"{k}_grad": v for k, v in grads.items()})
        if not return_cache_object:
            return output, cache
        return output, ActivationCache(cache, self, self.default_stack, steps, lengths,
                                       removed_batch_dim=remove_batch_dim, trimmed=trim_padding)

    # -- decoding and read-outs -----------------------------------------------------------------
    def transcribe(self, wave, sampling_rate: int | None = None) -> str | list[str]:
        """Text of a clip (a str) or of each clip of a batch / list (a list)."""
        clips, rate, single = as_waves(wave, sampling_rate, self.sampling_rate)
        texts = self._core.transcribe(clips, rate)
        return texts[0] if single else list(texts)

    def final_norm(self, residual: torch.Tensor, stack: str | None = None) -> torch.Tensor:
        """The stack's final norm (without its hooks) on a residual stream of that stack."""
        return self._core.final_norm(stack or self.default_stack, residual)

    def unembed_stack(self, normed: torch.Tensor, stack: str | None = None) -> torch.Tensor:
        """The stack's head (decoder / LM / CTC head) on a normed residual stream."""
        return self._core.unembed(stack or self.default_stack, normed)

    def apply_final_norm(self, residual: torch.Tensor, stack: str | None = None) -> torch.Tensor:
        return self.final_norm(residual, stack)


def batched(tensor, dims: int, what: str) -> torch.Tensor:
    """``tensor`` with a leading batch dimension: unbatched input gains one; any other rank is a
    ValueError naming ``what``."""
    if not isinstance(tensor, torch.Tensor):
        tensor = torch.as_tensor(tensor)
    if tensor.dim() == dims - 1:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() != dims:
        raise ValueError(f"{what} must have {dims - 1} or {dims} dimensions, got shape {tuple(tensor.shape)}")
    return tensor


def _to_cache_dict(store, pos_slice):
    out, steps, lengths = {}, {}, {}
    for name in store.names():
        firings = store.steps(name)
        if len(firings) != 1:
            steps[name] = list(firings)
            continue
        tensor = firings[0]
        if pos_slice is not None:
            tensor = _apply_pos_slice(name, tensor, pos_slice)
        out[name] = tensor
        lengths[name] = store.lengths(name)
    return out, steps, lengths


def _apply_pos_slice(name: str, tensor: torch.Tensor, pos_slice) -> torch.Tensor:
    index = pos_slice if isinstance(pos_slice, slice) else (
        slice(pos_slice, pos_slice + 1) if isinstance(pos_slice, int) else torch.as_tensor(pos_slice))
    # Attention patterns and scores are [batch, head, query_pos, key_pos]: slice the queries.
    dim = 2 if name.endswith(("hook_pattern", "hook_attn_scores")) else 1
    if tensor.dim() <= dim:
        return tensor
    if isinstance(index, slice):
        return tensor[(slice(None),) * dim + (index,)]
    return tensor.index_select(dim, index.to(tensor.device))


def _as_dtype(dtype):
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype).replace("torch.", ""), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r} (use e.g. 'float32', 'float16', 'bfloat16')")
    return value


def _device_str(device):
    return None if device is None else str(torch.device(device))
