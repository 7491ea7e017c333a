"""The Python face of the hooked models: TransformerLens's vocabulary over the C++ core.

Every method here composes calls into ``speechlens._C``; hooks, caching and the forward itself
run in C++. A Python hook function ``fn(tensor, hook)`` is called with ``hook=`` as a keyword,
exactly as TransformerLens calls hook functions, so TL hook functions work unchanged.
"""
from __future__ import annotations

import contextlib
import json
import re
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Sequence

import torch

from . import _C
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


class _StopForward(Exception):
    """Raised by the stop_at_layer hook to end a forward early, carrying the residual stream."""

    def __init__(self, residual: torch.Tensor):
        super().__init__("stop_at_layer")
        self.residual = residual


class HookPointProxy:
    """``model.hook_dict[name]``: one hook point, with TL's add_hook / remove_hooks."""

    def __init__(self, model: "HookedModel", name: str):
        self.model, self.name = model, name

    def add_hook(self, hook: Callable, dir: str = "fwd", is_permanent: bool = False):
        return self.model.add_hook(self.name, hook, dir=dir, is_permanent=is_permanent)

    def remove_hooks(self, dir: str = "both", including_permanent: bool = False) -> None:
        self.model._remove_point_hooks(self.name, including_permanent)

    def __repr__(self) -> str:
        return f"HookPoint({self.name!r})"


class HookedModel:
    """Common behaviour of every hooked speech model (use ``speechlens.load`` to make one)."""

    #: which stack ``cache["resid_post", 3]`` reads when no stack is named
    default_stack = "encoder"

    def __init__(self, core: _C.models.HookedModel, path: str | None = None):
        self._core = core
        self.path = path
        self.cfg = Config(**json.loads(core.config_json()))
        # Hook ids this wrapper added, by hook name, so remove_hooks can be selective.
        self._handles: dict[int, tuple[str, bool]] = {}

    # -- introspection ----------------------------------------------------------------------
    def hook_names(self) -> list[str]:
        """Every hook point name, in the order a forward visits them."""
        return list(self._core.hook_names())

    @property
    def hook_dict(self) -> dict[str, HookPointProxy]:
        return {name: HookPointProxy(self, name) for name in self._core.hook_names()}

    def resolve_hook_names(self, names_filter: NamesFilter) -> list[str]:
        """The hook names a filter selects: a name, a glob, a compiled regex, a callable, or a list
        of those. An unknown name raises KeyError listing the nearest names."""
        if names_filter is None:
            return self.hook_names()
        if isinstance(names_filter, (list, tuple, set)):
            seen: dict[str, None] = {}
            for item in names_filter:
                for name in self._core.resolve(item):
                    seen[name] = None
            return list(seen)
        return list(self._core.resolve(names_filter))

    @property
    def device(self) -> torch.device:
        return self._core.device

    @property
    def dtype(self) -> torch.dtype:
        return self._core.dtype

    def to(self, device=None, dtype=None) -> "HookedModel":
        self._core.to(torch.device(device) if isinstance(device, str) else device, _as_dtype(dtype))
        return self

    # -- hooks ------------------------------------------------------------------------------
    def add_hook(self, name: NamesFilter, hook: Callable, dir: str = "fwd", is_permanent: bool = False):
        """Attaches ``hook(tensor, hook=ctx)`` at every point ``name`` selects; returns the ids."""
        if not callable(hook):
            raise TypeError(f"a hook must be callable, got {type(hook).__name__}")
        ids = []
        for point in self.resolve_hook_names(name):
            for hook_id in self._core.add_hook(point, hook, dir, is_permanent):
                self._handles[hook_id] = (point, is_permanent)
                ids.append(hook_id)
        return ids

    def remove_hooks(self, ids: Iterable[int]) -> None:
        ids = list(ids)
        self._core.remove_hooks(ids)
        for hook_id in ids:
            self._handles.pop(hook_id, None)

    def _remove_point_hooks(self, name: str, including_permanent: bool) -> None:
        doomed = [i for i, (n, perm) in self._handles.items() if n == name and (including_permanent or not perm)]
        self.remove_hooks(doomed)

    def reset_hooks(self, including_permanent: bool = False) -> None:
        """Removes every hook (the permanent ones too when asked)."""
        self._core.reset_hooks(including_permanent)
        self._handles = {i: v for i, v in self._handles.items() if v[1] and not including_permanent}

    @contextlib.contextmanager
    def hooks(self, fwd_hooks: Sequence[HookSpec] = (), bwd_hooks: Sequence[HookSpec] = (),
              reset_hooks_end: bool = True):
        """Context manager: the hooks are attached inside the block and removed on exit, also
        when the block raises."""
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

    # -- running ----------------------------------------------------------------------------
    def forward(self, *args, **kwargs) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, *args, **kwargs) -> torch.Tensor:
        return self.forward(*args, **kwargs)

    def run_with_hooks(self, *model_args, fwd_hooks: Sequence[HookSpec] = (), bwd_hooks: Sequence[HookSpec] = (),
                       reset_hooks_end: bool = True, clear_contexts: bool = False, **model_kwargs):
        """One forward with temporary hooks (removed afterwards, also on error)."""
        with self.hooks(fwd_hooks, bwd_hooks, reset_hooks_end):
            return self.forward(*model_args, **model_kwargs)

    def run_with_cache(self, *model_args, names_filter: NamesFilter = None, device=None,
                       remove_batch_dim: bool = False, incl_bwd: bool = False, pos_slice=None,
                       stop_at_layer: int | None = None, dtype=None, max_bytes: int | None = None,
                       trim_padding: bool = False, backward_metric: Callable | None = None,
                       return_cache_object: bool = True, **model_kwargs):
        """One forward that records activations; returns ``(output, cache)``.

        The recording hooks run in C++ (no Python call per activation). ``incl_bwd`` also
        records gradients (keys ``name + "_grad"``) of ``backward_metric(output)``, or of the
        output itself when it is a scalar. ``stop_at_layer=n`` ends the forward before block
        ``n`` of the default stack and returns the residual stream there instead of logits.
        """
        names = self.resolve_hook_names(names_filter)
        store = _C.hooks.ActivationCacheStore(detach=True, device=_device_str(device), dtype=_as_dtype(dtype),
                                              remove_batch_dim=remove_batch_dim, trim_padding=trim_padding,
                                              max_bytes=max_bytes)
        grad_store = None
        ids = []
        try:
            for name in names:
                ids += self._core.add_cache_hook(name, store, "fwd")
            if incl_bwd:
                grad_store = _C.hooks.ActivationCacheStore(detach=True, device=_device_str(device),
                                                           dtype=_as_dtype(dtype),
                                                           remove_batch_dim=remove_batch_dim,
                                                           trim_padding=trim_padding, max_bytes=max_bytes)
                for name in names:
                    ids += self._core.add_cache_hook(name, grad_store, "bwd")
            if stop_at_layer is not None:
                ids += self._core.add_hook(f"{self.default_stack}.blocks.{stop_at_layer}.hook_resid_pre",
                                           _raise_stop, "fwd", False)
            try:
                with torch.enable_grad() if incl_bwd else contextlib.nullcontext():
                    output = self.forward(*model_args, **model_kwargs)
                    if incl_bwd:
                        target = backward_metric(output) if backward_metric is not None else output
                        if target.numel() != 1:
                            raise ValueError("incl_bwd needs a scalar: pass backward_metric=fn(logits) -> scalar")
                        target.backward()
            except _StopForward as stop:
                output = stop.residual
        finally:
            self._core.remove_hooks(ids)
        cache = _to_cache_dict(store, pos_slice)
        steps = _steps_dict(store)
        if grad_store is not None:
            cache.update({f"{k}_grad": v for k, v in _to_cache_dict(grad_store, pos_slice).items()})
        if not return_cache_object:
            return output, cache
        return output, ActivationCache(cache, self, self.default_stack, steps)


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


def _raise_stop(tensor, hook):
    raise _StopForward(tensor)


def _to_cache_dict(store, pos_slice) -> dict[str, torch.Tensor]:
    out = {}
    for name in store.names():
        firings = store.steps(name)
        if len(firings) != 1:
            continue
        tensor = firings[0]
        if pos_slice is not None:
            tensor = _apply_pos_slice(name, tensor, pos_slice)
        out[name] = tensor
    return out


def _steps_dict(store) -> dict[str, list[torch.Tensor]]:
    return {name: list(store.steps(name)) for name in store.names() if len(store.steps(name)) != 1}


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
