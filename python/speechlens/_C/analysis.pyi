"""
Patching, lenses, probes, neuron statistics, CKA
"""
from __future__ import annotations
import collections.abc
import speechlens._C.models
from speechlens._C.models import ModelInputs
import torch
import typing
__all__: list[str] = ['LayerDecodeResult', 'LogitLensResult', 'ModelInputs', 'NeuronStats', 'PatchingResult', 'ProbeResult', 'accumulate_neuron_stats', 'activation_patching', 'apply_ln_to_stack', 'attribution_patching', 'bias_logit_attrs', 'cka_matrix', 'decode_from_layers', 'flatten_frames', 'linear_cka', 'logit_attrs', 'logit_lens', 'pool_frames', 'train_probe']
class PatchingResult:
    @property
    def axis_names(self) -> list[str]:
        ...
    @property
    def clean_metric(self) -> float:
        ...
    @property
    def corrupted_metric(self) -> float:
        ...
    @property
    def forwards(self) -> int:
        ...
    @property
    def hook_names(self) -> list[str]:
        ...
    @property
    def normalized(self) -> bool:
        ...
    @property
    def reverse(self) -> bool:
        ...
    @property
    def slot_labels(self) -> list[str]:
        ...
    @property
    def slot_ranges(self) -> list[tuple[int, int]]:
        ...
    @property
    def sweep(self) -> str:
        ...
    @property
    def values(self) -> torch.Tensor:
        ...
class LogitLensResult:
    @property
    def hook_names(self) -> list[str]:
        ...
    @property
    def layers(self) -> list[int]:
        ...
    @property
    def logits(self) -> torch.Tensor:
        ...
    @property
    def stack(self) -> str:
        ...
class LayerDecodeResult:
    @property
    def layers(self) -> list[int]:
        ...
    @property
    def logits(self) -> typing.Any:
        ...
    @property
    def stack(self) -> str:
        ...
    @property
    def tokens(self) -> list[list[list[int]]]:
        ...
class ProbeResult:
    def __repr__(self) -> str:
        ...
    @property
    def bias(self) -> torch.Tensor:
        ...
    @property
    def chance(self) -> float:
        ...
    @property
    def control_score(self) -> float:
        ...
    @property
    def iterations(self) -> int:
        ...
    @property
    def metric(self) -> str:
        ...
    @property
    def n_test(self) -> int:
        ...
    @property
    def n_train(self) -> int:
        ...
    @property
    def test_score(self) -> float:
        ...
    @property
    def train_score(self) -> float:
        ...
    @property
    def weight(self) -> torch.Tensor:
        ...
class NeuronStats:
    """
    Streaming per-class, per-neuron mean and variance.
    """
    def __init__(self, classes: typing.SupportsInt | typing.SupportsIndex, neurons: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def dprime(self) -> torch.Tensor:
        ...
    def merge(self, other: NeuronStats) -> None:
        ...
    def selectivity(self) -> torch.Tensor:
        ...
    def update(self, activations: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        ...
    @property
    def classes(self) -> int:
        ...
    @property
    def count(self) -> torch.Tensor:
        ...
    @property
    def mean(self) -> torch.Tensor:
        ...
    @property
    def neurons(self) -> int:
        ...
    @property
    def variance(self) -> torch.Tensor:
        ...
def accumulate_neuron_stats(model: speechlens._C.models.HookedModel, inputs: typing.Any, hook_name: str, labels: torch.Tensor, stats: NeuronStats) -> None:
    ...
def activation_patching(model: speechlens._C.models.HookedModel, clean: typing.Any, corrupted: typing.Any, hooks: typing.Any, metric: collections.abc.Callable, sweep: str = 'position', window: typing.SupportsInt | typing.SupportsIndex = 1, positions: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex] = (0, -1), reverse: bool = False, normalize: bool = False, max_batch: typing.SupportsInt | typing.SupportsIndex = 64, progress: collections.abc.Callable | None = None) -> PatchingResult:
    """
    Batched activation-patching sweep; see speechlens.patching.
    """
def apply_ln_to_stack(model: speechlens._C.models.HookedModel, stack: str, components: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    ...
def attribution_patching(model: speechlens._C.models.HookedModel, clean: typing.Any, corrupted: typing.Any, hooks: typing.Any, metric: collections.abc.Callable, sweep: str = 'position', window: typing.SupportsInt | typing.SupportsIndex = 1, positions: tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex] = (0, -1), reverse: bool = False, normalize: bool = False, max_batch: typing.SupportsInt | typing.SupportsIndex = 64, progress: collections.abc.Callable | None = None) -> PatchingResult:
    """
    Gradient (attribution) patching over the same sweep shapes.
    """
def bias_logit_attrs(model: speechlens._C.models.HookedModel, stack: str, tokens: torch.Tensor, incorrect: torch.Tensor | None = None) -> torch.Tensor:
    ...
def cka_matrix(a: collections.abc.Sequence[torch.Tensor], b: collections.abc.Sequence[torch.Tensor]) -> torch.Tensor:
    ...
def decode_from_layers(model: speechlens._C.models.HookedModel, inputs: typing.Any, stack: str = 'encoder', layers: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex] = [], teacher_forced: bool = True, generate: bool = True, prompt: torch.Tensor | None = None, max_new_tokens: typing.SupportsInt | typing.SupportsIndex = 0, apply_suppress_tokens: bool = True, teacher_tokens: torch.Tensor | None = None) -> LayerDecodeResult:
    """
    The model's outputs with layer L of `stack` standing in for its last layer (the encoder lens).
    """
def flatten_frames(activations: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    ...
def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    ...
def logit_attrs(model: speechlens._C.models.HookedModel, stack: str, normed_components: torch.Tensor, tokens: torch.Tensor, incorrect: torch.Tensor | None = None) -> torch.Tensor:
    ...
def logit_lens(model: speechlens._C.models.HookedModel, inputs: typing.Any, stack: str | None = None, layers: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex] = [], include_input: bool = True) -> LogitLensResult:
    """
    Each layer's residual stream read out: through the stack's final norm and head, or (a stack without a head) by decoding from it.
    """
def pool_frames(activations: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    ...
def train_probe(x: torch.Tensor, y: torch.Tensor, kind: str = 'logistic', l2: typing.SupportsFloat | typing.SupportsIndex = 0.01, test_fraction: typing.SupportsFloat | typing.SupportsIndex = 0.25, seed: typing.SupportsInt | typing.SupportsIndex = 0, max_iter: typing.SupportsInt | typing.SupportsIndex = 500, control: bool = True) -> ProbeResult:
    ...
