"""Target layers: resolve a module or dotted name, and bring its output to a (N, K, h, w) grid.

CNN layers already give (N, K, h, w). ViT-style layers give tokens (N, L, D); the grid is inferred
from the token count and the input size: the first ``r`` tokens (class and register tokens,
0 <= r <= 8, the smallest ``r`` that fits wins) are dropped and the remaining ``L - r`` tokens are
laid out row-major on an ``h x w`` grid with ``h = H // p`` and ``w = W // p`` for a common patch
size ``p``. Anything else takes ``reshape=``, a callable that maps the layer's output to
(N, K, h, w); it must be a pure re-indexing (select, reshape, permute), because it is applied to
the gradient as well.
"""
from __future__ import annotations

import difflib
from typing import Callable, Sequence

import torch
from torch import nn

__all__ = ["resolve_layers", "infer_token_grid", "grid_transform", "find_classifier"]

MAX_PREFIX_TOKENS = 8


def resolve_layers(model: nn.Module, target_layer, owner: str = "the model") -> list[tuple[str, nn.Module]]:
    """Return ``[(dotted_name, module), ...]`` for a module, a dotted name, or a list of them;
    ``owner`` names ``model`` in the error messages.

    >>> m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    >>> [n for n, _ in resolve_layers(m, ["0", m[1]])]
    ['0', '1']
    """
    named = dict(model.named_modules())
    items = list(target_layer) if isinstance(target_layer, (list, tuple)) else [target_layer]
    if not items:
        raise ValueError("target_layer must name at least one layer, got an empty list")
    out: list[tuple[str, nn.Module]] = []
    for item in items:
        if isinstance(item, str):
            if item not in named:
                close = difflib.get_close_matches(item, list(named), n=3)
                hint = f"; closest names: {close}" if close else ""
                raise ValueError(f"target_layer {item!r} is not a submodule of {owner}{hint}")
            out.append((item, named[item]))
        elif isinstance(item, nn.Module):
            name = next((n for n, m in named.items() if m is item), None)
            if name is None:
                raise ValueError(f"target_layer {type(item).__name__} is not a submodule of {owner}")
            out.append((name, item))
        else:
            raise TypeError("target_layer must be an nn.Module, a dotted name, or a list of them, "
                            f"got {type(item).__name__}")
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise ValueError(f"target_layer lists the same layer twice: {names}")
    return out


def infer_token_grid(num_tokens: int, input_size: Sequence[int]) -> tuple[int, int, int]:
    """``(prefix, h, w)`` for ``num_tokens`` tokens from an input of size (H, W).

    The smallest ``prefix`` r in 0..8, then the smallest patch size p, with
    :math:`\\lfloor H/p \\rfloor \\cdot \\lfloor W/p \\rfloor = L - r` (``h = H // p``,
    ``w = W // p``); a ``ValueError`` when none fits.

    >>> infer_token_grid(197, (224, 224))   # ViT-B/16: class token + 14 x 14
    (1, 14, 14)
    >>> infer_token_grid(261, (224, 224))   # DINOv2 with 4 registers: 1 + 4 + 16 x 16
    (5, 16, 16)
    """
    H, W = int(input_size[0]), int(input_size[1])
    for prefix in range(0, min(MAX_PREFIX_TOKENS, num_tokens - 1) + 1):
        patches = num_tokens - prefix
        for p in range(1, min(H, W) + 1):
            h, w = H // p, W // p
            if h * w == patches:
                return prefix, h, w
            if h * w < patches:
                break
    raise ValueError(f"cannot lay {num_tokens} tokens on a patch grid for an input of {H}x{W}; "
                     "pass reshape=, a callable returning the layer output as (N, K, h, w)")


def grid_transform(output: torch.Tensor, input_size: Sequence[int],
                   reshape: Callable | None, layer_name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function that maps the layer's output (or its gradient, same shape) to (N, K, h, w).

    >>> tokens = torch.zeros(2, 1 + 16, 8)                 # class token + 4 x 4 patches, D = 8
    >>> grid_transform(tokens, (16, 16), None, "blk")(tokens).shape
    torch.Size([2, 8, 4, 4])
    """
    if reshape is not None:
        def apply(t: torch.Tensor) -> torch.Tensor:
            g = reshape(t)
            if not isinstance(g, torch.Tensor) or g.ndim != 4 or g.shape[0] != t.shape[0]:
                raise ValueError(f"reshape must return a (N, K, h, w) tensor for layer {layer_name!r}, "
                                 f"got {getattr(g, 'shape', type(g).__name__)}")
            return g
        return apply
    if output.ndim == 4:
        return lambda t: t
    if output.ndim == 3:
        prefix, h, w = infer_token_grid(output.shape[1], input_size)

        def tokens(t: torch.Tensor) -> torch.Tensor:
            n, _, d = t.shape
            return t[:, prefix:, :].reshape(n, h, w, d).permute(0, 3, 1, 2)
        return tokens
    raise ValueError(f"layer {layer_name!r} gives a {output.ndim}-D output of shape {tuple(output.shape)}; "
                     "expected 4-D (N, K, h, w) or 3-D tokens (N, L, D), or pass reshape=")


def find_classifier(model: nn.Module, num_classes: int | None = None) -> nn.Linear | None:
    """The model's classifier head: its last ``nn.Linear`` (in ``model.modules()`` order) with
    ``num_classes`` outputs, or its last ``nn.Linear`` of any size when ``num_classes`` is None;
    None if it has none.

    Its weight rows :math:`w_c` are what the classifier compares: the reference rules and
    :meth:`finercam.Explanation.diagnose` read cosines :math:`w_c \\cdot w_t / (|w_c| |w_t|)`.

    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> find_classifier(net) is net[2], find_classifier(net, 8) is net[0], find_classifier(net, 5)
    (True, True, None)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)):
        raise TypeError(f"num_classes must be None or an int, got {type(num_classes).__name__}")
    found = None
    for m in model.modules():
        if isinstance(m, nn.Linear) and (num_classes is None or m.out_features == num_classes):
            found = m
    return found
