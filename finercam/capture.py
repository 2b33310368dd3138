"""One forward pass with a tap on the target layers; the model leaves as it came.

The forward runs with autograd off until the first tapped layer. Its forward hook switches
autograd on and hands the rest of the network ``leaf.clone()``, where ``leaf`` is the layer's
output detached and marked ``requires_grad``: the graph then spans only the layers after the
tap, whatever the caller's grad mode and whether or not the parameters are frozen, and in-place
operations after the layer (``out += identity``) act on the clone, never on the values we keep.
Gradients go to the tapped tensors only (``torch.autograd.grad``), so parameter ``.grad`` is never
touched and no graph outlives the call.

>>> import torch
>>> from torch import nn
>>> m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
>>> with model_state(m) as hooks:
...     logits, taps = tapped_forward(m, torch.rand(2, 3, 8, 8), [("1", m[1])], hooks, track_grad=True)
>>> logits.shape, taps[0].shape, taps[0].requires_grad
(torch.Size([2, 5]), torch.Size([2, 4, 6, 6]), True)
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch
from torch import nn

__all__ = ["model_state", "tapped_forward", "extract_logits", "directional_gradients"]


@contextlib.contextmanager
def model_state(model: nn.Module) -> Iterator[list]:
    """Eval mode, inference mode off, and a hook list; all restored (every submodule's
    ``training`` flag, the grad mode, the hooks removed) on exit, exceptions included.

    Eval mode because a CAM explains the model's prediction: dropout off, batch-norm running
    statistics used and, above all, not updated by our forward passes.

    >>> m = nn.Sequential(nn.Linear(2, 2), nn.Dropout()).train()
    >>> with model_state(m):
    ...     m.training
    False
    >>> m.training, torch.is_grad_enabled()
    (True, True)
    """
    modes = [(m, m.training) for m in model.modules()]
    grad_mode = torch.is_grad_enabled()
    hooks: list = []
    try:
        with torch.inference_mode(False):
            # eval() walks every module through nn.Module.__setattr__ (a third of a millisecond
            # on a small CNN): skipped for a model already in eval mode, the usual case.
            if any(flag for _, flag in modes):
                model.eval()
            yield hooks
    finally:
        for h in hooks:
            h.remove()
        hooks.clear()
        for m, flag in modes:
            if m.training != flag:
                m.training = flag
        torch.set_grad_enabled(grad_mode)


class _Tap:
    """Forward hooks that record each target layer's output (see the module docstring)."""

    def __init__(self, layers: Sequence[tuple[str, nn.Module]], track_grad: bool):
        self.names = [n for n, _ in layers]
        self.track_grad = track_grad
        self.outputs: list = [None] * len(layers)
        self.calls = [0] * len(layers)

    def _layer_output(self, idx: int, output) -> torch.Tensor:
        """The layer's output tensor (a tuple's first item), checked: first call, 3-D or 4-D."""
        self.calls[idx] += 1
        if self.calls[idx] > 1:
            raise ValueError(f"target_layer {self.names[idx]!r} runs more than once in the forward "
                             "pass; pick a module that is called once")
        t = output[0] if isinstance(output, (tuple, list)) and len(output) else output
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"target_layer {self.names[idx]!r} returns {type(output).__name__}, "
                             "not a tensor")
        if t.ndim not in (3, 4):
            raise ValueError(f"target_layer {self.names[idx]!r} gives a {t.ndim}-D output of shape "
                             f"{tuple(t.shape)}; expected 4-D (N, K, h, w) or 3-D tokens (N, L, D)")
        return t

    def hook(self, idx: int):
        def fn(module, inputs, output):
            t = self._layer_output(idx, output)
            seq = isinstance(output, (tuple, list))
            if not self.track_grad:
                self.outputs[idx] = t.detach()
                return None
            torch.set_grad_enabled(True)
            # A tap downstream of another tap is already in the graph and stays there, so that
            # gradients still flow to the earlier tap through it.
            tapped = t if t.requires_grad else t.detach().requires_grad_()
            self.outputs[idx] = tapped
            new = tapped.clone()
            if not seq:
                return new
            return type(output)([new, *output[1:]]) if isinstance(output, list) else (new, *output[1:])
        return fn


def extract_logits(out, batch: int) -> torch.Tensor:
    """The (N, C) logits of a model output: a tensor, an object with a tensor ``.logits``, a dict
    (``"logits"``), or a tuple/list (first item). The one reader of model outputs (FinerCAM and
    the metrics both use it).

    An output that holds no logits tensor at all is a ``TypeError`` (its type is wrong); a tensor
    that is not (N, C) float logits with ``N == batch`` is a ``ValueError``.

    >>> extract_logits({"logits": torch.zeros(2, 5), "aux": 1}, batch=2).shape
    torch.Size([2, 5])
    >>> extract_logits("y", batch=2)
    Traceback (most recent call last):
    ...
    TypeError: model output must be (N, C) logits (a tensor, .logits, a dict with 'logits' or a tuple), got str
    """
    if not isinstance(out, torch.Tensor):
        if isinstance(getattr(out, "logits", None), torch.Tensor):
            out = out.logits
        elif isinstance(out, dict):
            if "logits" not in out:
                raise TypeError(f"model output is a dict without a 'logits' key (keys: {list(out)})")
            out = out["logits"]
        elif isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
            out = out[0]
        if not isinstance(out, torch.Tensor):
            raise TypeError("model output must be (N, C) logits (a tensor, .logits, a dict with 'logits' "
                            f"or a tuple), got {type(out).__name__}")
    if out.ndim != 2 or out.shape[0] != batch or not out.is_floating_point():
        raise ValueError(f"model output must be (N, C) float logits with N = {batch}, "
                         f"got {tuple(out.shape)} {out.dtype}")
    return out


def tapped_forward(model: nn.Module, images: torch.Tensor, layers, hooks: list,
                   track_grad: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run ``model(images)`` once with taps; returns ``(logits, tapped outputs)``.

    Must run inside :func:`model_state` (which removes the hooks appended to ``hooks``); see the
    module's example.
    """
    tap = _Tap(layers, track_grad)
    for i, (_, module) in enumerate(layers):
        hooks.append(module.register_forward_hook(tap.hook(i)))
    torch.set_grad_enabled(False)
    out = model(images)
    logits = extract_logits(out, images.shape[0])
    for name, t in zip(tap.names, tap.outputs, strict=True):
        if t is None:
            raise ValueError(f"target_layer {name!r} is not reached by the model's forward pass")
    if track_grad and not logits.requires_grad:
        raise ValueError("the logits do not depend on the target layer through autograd "
                         "(is the layer used under torch.no_grad() inside the model?)")
    torch.set_grad_enabled(False)
    return logits, tap.outputs


def directional_gradients(logits: torch.Tensor, taps: list[torch.Tensor], directions: torch.Tensor,
                          names: Sequence[str]) -> Iterator[tuple[int, list[torch.Tensor]]]:
    """Yield ``(s, [d(directions[:, s] . logits)/d tap for each tap])`` for s in range(S).

    ``directions`` is (N, S, C); each step is one backward over the part of the graph after the
    taps, the last one frees the graph.

    >>> lin = nn.Linear(3, 2)
    >>> tap = torch.ones(1, 3, requires_grad=True)
    >>> dirs = torch.eye(2)[None]                        # one sample, both classes
    >>> [torch.equal(g[0][0], lin.weight[s]) for s, g in directional_gradients(lin(tap), [tap], dirs, ["x"])]
    [True, True]
    """
    S = directions.shape[1]
    for s in range(S):
        v = directions[:, s].to(dtype=logits.dtype)
        with torch.enable_grad():
            # The scalar sum(v * logits) has exactly the gradient v at the logits. Passed as
            # grad_outputs instead, v would make torch import sympy (1-2 s) on the first call.
            grads = torch.autograd.grad((logits * v).sum(), taps, retain_graph=s < S - 1,
                                        allow_unused=True)
        out = []
        for name, g in zip(names, grads, strict=True):
            if g is None:
                raise ValueError(f"the logits do not depend on target_layer {name!r}")
            out.append(g)
        yield s, out
