"""Which layer to explain: :func:`suggest_layers` runs the model once on a blank input and
proposes target layers, best first.

* **Transformers** (a block holding an attention module and a norm over tokens): the last
  block's first norm (``layernorm_before``, ``norm1``, ``layer_norm1``). Its patch tokens still
  reach the logits through that block's attention even when the head reads the class token
  alone, after which the patch tokens' gradients vanish. Then, for hierarchical transformers
  (Swin), the same norm in the last block of the previous, finer stage.
* **CNNs** (and ConvNeXt): the last spatial feature map (the outermost module giving the last
  4-D output with more than one cell, before the pooling), then the last feature map of the next
  finer grid (the previous stage). The finer layer localises small parts better: in this project's
  ablation (``docs/benchmark.md``) the bird CNN's ``block2`` beat ``block3``.

Layouts are read as :mod:`finercam.layers` reads them, so every suggestion is a layer that
:class:`finercam.FinerCAM` lays on a grid without ``reshape=``.

>>> from torch import nn
>>> net = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),
...                     nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))
>>> [(s.name, s.grid, s.channels) for s in suggest_layers(net, (32, 32))]
[('3', (8, 8), 16), ('1', (16, 16), 8)]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .capture import model_state
from .layers import PatchGrid, PatchProbe, feature_layout, token_layout

__all__ = ["LayerSuggestion", "suggest_layers"]


@dataclass(frozen=True)
class LayerSuggestion:
    """A candidate target layer: its dotted ``name``, its ``grid`` (h, w) at the input size
    asked, its ``channels`` K (the token width for a transformer) and ``why`` it is proposed."""

    name: str
    grid: tuple[int, int]
    channels: int
    why: str


@dataclass
class _Seen:
    """One module's first call: its order, its output and how often it ran."""

    name: str
    module: nn.Module
    order: int
    output: torch.Tensor
    calls: int = 1
    grid: tuple[int, int] | None = None
    channels: int = 0


def _check_input_size(input_size) -> tuple[int, int, int | None]:
    if isinstance(input_size, (str, bytes)) or not hasattr(input_size, "__len__"):
        raise TypeError(f"input_size must be (H, W) or (C, H, W), got {type(input_size).__name__}")
    vals = list(input_size)
    if len(vals) not in (2, 3) or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in vals):
        raise ValueError(f"input_size must be (H, W) or (C, H, W) positive ints, got {input_size!r}")
    return (vals[-2], vals[-1], vals[0] if len(vals) == 3 else None)


def _record(model: nn.Module, x: torch.Tensor, hooks: list) -> list[_Seen]:
    seen: dict[str, _Seen] = {}
    for name, module in model.named_modules():
        if not name:
            continue

        def hook(mod, inputs, output, name=name):
            t = output[0] if isinstance(output, (tuple, list)) and len(output) else output
            if name in seen:
                seen[name].calls += 1
            elif isinstance(t, torch.Tensor) and t.ndim in (3, 4):
                seen[name] = _Seen(name, mod, len(seen), t)
        hooks.append(module.register_forward_hook(hook))
    try:
        model(x)
    except RuntimeError as exc:       # a shape mismatch: the model does not take this input size
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"{type(model).__name__} does not run on a {tuple(x.shape)} input (input_size): "
                         f"{first}") from None
    return sorted(seen.values(), key=lambda s: s.order)


def _lay_out(s: _Seen, size: tuple[int, int], patch: PatchGrid | None) -> None:
    """Fill ``s.grid`` and ``s.channels`` where the output has a layout with more than one cell."""
    shape = tuple(s.output.shape)
    try:
        if s.output.ndim == 3:
            _, h, w = token_layout(shape, size, patch, s.name)
            grid, channels = (h, w), shape[2]
        elif feature_layout(shape, size, patch, s.name, s.module) == "last":
            grid, channels = (shape[1], shape[2]), shape[3]
        else:
            grid, channels = (shape[2], shape[3]), shape[1]
    except ValueError:
        return
    if grid[0] * grid[1] > 1:
        s.grid, s.channels = grid, int(channels)


def _is_norm(m: nn.Module) -> bool:
    return isinstance(m, (nn.LayerNorm, nn.GroupNorm)) or "Norm" in type(m).__name__


def _transformer_blocks(seen: list[_Seen]) -> list[tuple[_Seen, _Seen]]:
    """``(block, its first norm)`` for each module holding an attention child and a norm over
    tokens, in call order."""
    by_module = {id(s.module): s for s in seen}
    out = []
    for s in seen:
        children = list(s.module.children())
        if not any("Attention" in type(c).__name__ for c in children):
            continue
        norms = [by_module[id(c)] for c in children if _is_norm(c) and id(c) in by_module]
        norms = [n for n in norms if n.grid is not None and n.output.ndim == 3 and n.calls == 1]
        if norms:
            out.append((s, min(norms, key=lambda n: n.order)))
    return sorted(out, key=lambda b: b[0].order)


def _outermost(seen: list[_Seen], s: _Seen) -> _Seen:
    """The module with the fewest dots among those whose output is ``s``'s very tensor (a stage,
    rather than its last block's last activation), called once."""
    same = [o for o in seen if o.output is s.output and o.calls == 1 and o.grid is not None]
    return min(same or [s], key=lambda o: (o.name.count("."), -o.order))


def _suggest_transformer(blocks: list[tuple[_Seen, _Seen]]) -> list[LayerSuggestion]:
    block, norm = blocks[-1]
    out = [LayerSuggestion(norm.name, norm.grid, norm.channels,  # type: ignore[arg-type]
                           f"the last transformer block's ({block.name}) first norm: its patch tokens "
                           "reach the logits through the block's attention even when the head reads "
                           "the class token alone")]
    cells = norm.grid[0] * norm.grid[1]  # type: ignore[index]
    finer = [(b, n) for b, n in blocks if n.grid[0] * n.grid[1] > cells]  # type: ignore[index]
    if finer:
        b, n = finer[-1]
        out.append(LayerSuggestion(n.name, n.grid, n.channels,  # type: ignore[arg-type]
                                   f"the first norm of the last block ({b.name}) of the previous, "
                                   "finer stage: smaller parts, less class-specific features"))
    return out


_ADAPTIVE_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def _suggest_cnn(seen: list[_Seen]) -> list[LayerSuggestion]:
    # An adaptive pooling layer is the head's summary of the last map, not a feature map of its
    # own (AdaptiveAvgPool2d(2) gives a 2 x 2 "map" of the same features).
    maps = [s for s in seen if s.grid is not None and s.output.ndim == 4 and s.calls == 1
            and not isinstance(s.module, _ADAPTIVE_POOLS)]
    if not maps:
        return []
    # The last feature map is the one completed last: a stage's hook runs after its blocks'.
    last = _outermost(seen, max(maps, key=lambda s: s.order))
    out = [LayerSuggestion(last.name, last.grid, last.channels,  # type: ignore[arg-type]
                           "the last spatial feature map: the most class-specific features, "
                           "on the coarsest grid")]
    cells = last.grid[0] * last.grid[1]  # type: ignore[index]
    # At least 3x the cells (a stride-2 stage gives 4x; a padded copy of the last map, 9 x 9 around
    # 7 x 7, is not a finer layer).
    finer = [s for s in maps if s.grid[0] * s.grid[1] >= 3 * cells]  # type: ignore[index]
    # The previous stage: the next finer grid (14 x 14 before 7 x 7, not the stem's 112 x 112);
    # there a sibling of the last map (stages.0 before stages.1, block2 before block3), else the
    # shallowest module (a block rather than a norm inside the block that opens the next stage),
    # completed last.
    if finer:
        step = min(s.grid[0] * s.grid[1] for s in finer)  # type: ignore[index]
        finer = [s for s in finer if s.grid[0] * s.grid[1] == step]  # type: ignore[index]
        parent = last.name.rpartition(".")[0]
        pool = [s for s in finer if s.name.rpartition(".")[0] == parent]
        if not pool:
            depth = min(s.name.count(".") for s in finer)
            pool = [s for s in finer if s.name.count(".") == depth]
        f = _outermost(seen, max(pool, key=lambda s: s.order))
        out.append(LayerSuggestion(f.name, f.grid, f.channels,  # type: ignore[arg-type]
                                   "the last feature map of the previous, finer grid: it "
                                   "localises small parts better (see docs/architectures.md)"))
    return out


def _model_input(model: nn.Module, h: int, w: int, channels: int | None) -> torch.Tensor:
    """A blank (1, C, h, w) input on the model's device and in its floating dtype; C from
    ``input_size``, else the first convolution's input channels, else 3."""
    if channels is None:
        conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        channels = conv.in_channels if conv is not None else 3
    p = next((p for p in model.parameters() if p.is_floating_point()), None)
    device = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None else torch.float32
    return torch.zeros((1, channels, h, w), device=device, dtype=dtype)


def suggest_layers(model: nn.Module, input_size: Sequence[int]) -> list[LayerSuggestion]:
    """Candidate target layers of ``model`` for inputs of ``input_size`` (H, W) or (C, H, W),
    best first (see the module docstring): :class:`LayerSuggestion` records. One forward pass on
    a blank input; the model leaves as it came (hooks, grad mode, training flags). A model with
    no layer of a spatial layout is a ``ValueError``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    h, w, channels = _check_input_size(input_size)
    x = _model_input(model, h, w, channels)
    with model_state(model) as hooks, torch.no_grad():
        probe = PatchProbe(model, x, hooks)
        seen = _record(model, x, hooks)
    patch = probe.result()
    for s in seen:
        _lay_out(s, (h, w), patch)
    blocks = _transformer_blocks(seen)
    found = _suggest_transformer(blocks) if blocks else _suggest_cnn(seen)
    if not found:
        raise ValueError(f"no layer of {type(model).__name__} gives a feature map or patch tokens at "
                         f"input size {h}x{w}: pass target_layer= (and reshape=)")
    return found
