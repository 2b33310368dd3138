"""Finer-CAM for CLIP-style zero-shot models: the classes are text prompts (paper, Section 3.3).

A zero-shot model scores an image x against prompts p_1..p_P by

    y_j = s * cos(f(x), e_j) = s * <f(x) / |f(x)|, e_j / |e_j|>,

with f the image encoder, e_j the text embedding of prompt j and s the logit scale (CLIP: 100).
:class:`ZeroShotHead` is exactly that as an ``nn.Module`` whose output is these logits, so the
whole engine (:class:`finercam.FinerCAM`: every base method, reference rule, aggregation and
``recombine``) applies unchanged; :class:`ZeroShotFinerCAM` adds prompts by name, e.g. the map of

    y_"red wing" - gamma * y_"bird"

which localises the trait far better than the prompt alone (Fig. 2 and 12 of the paper). Text
embeddings are computed once, at construction, and cached; explaining never calls the text encoder.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional, Union

import numpy as np
import torch
from torch import nn

from ..finer import FinerCAM
from ..layers import resolve_layers

__all__ = ["ZeroShotHead", "ZeroShotFinerCAM", "embeddings_from_output", "check_prompts"]

PromptList = Sequence[str]


def embeddings_from_output(out: Any, name: str) -> torch.Tensor:
    """The (N, D) embedding tensor inside an encoder's output.

    Accepts a tensor, a tuple/list (first element), or an object/dict holding ``image_embeds``,
    ``text_embeds`` or ``pooler_output`` (Hugging Face ``get_*_features`` return the projected
    embeddings as a tensor before transformers 5 and as ``pooler_output`` since).

    >>> e = torch.ones(2, 4)
    >>> embeddings_from_output((e, None), "image") is e
    True
    >>> embeddings_from_output({"pooler_output": e}, "image") is e
    True
    """
    emb: torch.Tensor | None = out if isinstance(out, torch.Tensor) else None
    for key in ("image_embeds", "text_embeds", "pooler_output"):
        if emb is not None:
            break
        value = out.get(key) if isinstance(out, Mapping) else getattr(out, key, None)
        if isinstance(value, torch.Tensor):
            emb = value
    if emb is None and isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        emb = out[0]
    if emb is None:
        raise TypeError(f"{name} must return a tensor of embeddings (N, D), got {type(out).__name__}")
    if emb.ndim != 2:
        raise ValueError(f"{name} must return embeddings of shape (N, D), got {tuple(emb.shape)}")
    return emb


def check_prompts(prompts: object) -> tuple[str, ...]:
    """Validate a prompt list: at least two distinct, non-empty strings.

    >>> check_prompts(["a red crest", "a bird"])
    ('a red crest', 'a bird')
    >>> check_prompts(["a bird", "a bird"])
    Traceback (most recent call last):
    ...
    ValueError: prompts holds 'a bird' twice (entries 0 and 1)
    """
    if isinstance(prompts, str) or not isinstance(prompts, Sequence):
        raise TypeError(f"prompts must be a list of strings, got {type(prompts).__name__}")
    out = tuple(prompts)
    if len(out) == 0:
        raise ValueError("prompts is empty: give at least a target prompt and a reference prompt")
    for i, p in enumerate(out):
        if not isinstance(p, str):
            raise TypeError(f"prompts[{i}] must be a string, got {type(p).__name__}")
        if not p.strip():
            raise ValueError(f"prompts[{i}] is an empty string")
    if len(out) < 2:
        raise ValueError(f"prompts must hold at least two prompts (a target and a reference), got {list(out)}")
    seen: dict[str, int] = {}
    for i, p in enumerate(out):
        if p in seen:
            raise ValueError(f"prompts holds {p!r} twice (entries {seen[p]} and {i})")
        seen[p] = i
    return out


def _normalised_embeddings(emb: Any, n_prompts: int) -> torch.Tensor:
    if isinstance(emb, np.ndarray):
        emb = torch.from_numpy(np.ascontiguousarray(emb))
    if not isinstance(emb, torch.Tensor):
        raise TypeError(f"text_embeddings must be a torch tensor or a NumPy array, got {type(emb).__name__}")
    if emb.ndim != 2:
        raise ValueError(f"text_embeddings must have shape (num_prompts, D), got {tuple(emb.shape)}")
    if emb.shape[0] != n_prompts:
        raise ValueError(f"text_embeddings has {emb.shape[0]} rows but prompts has {n_prompts} entries")
    if emb.shape[1] == 0:
        raise ValueError("text_embeddings has embedding size 0")
    if not (emb.dtype.is_floating_point):
        raise TypeError(f"text_embeddings must be floating point, got {emb.dtype}")
    emb = emb.detach().to(torch.float32)
    if not torch.isfinite(emb).all():
        raise ValueError("text_embeddings holds NaN or infinite values")
    norms = emb.norm(dim=1)
    zero = torch.nonzero(norms == 0).flatten().tolist()
    if zero:
        raise ValueError(f"text_embeddings rows {zero} are all zeros: their cosine is undefined")
    return (emb / norms[:, None]).contiguous()


class ZeroShotHead(nn.Module):
    """``logits = scale * cos(image_encoder(x), text_embeddings)``, as a classifier module.

    The cosine is computed in float32 whatever the encoder's dtype. The normalised text embeddings
    scaled by ``scale`` are the weight of a bias-free ``nn.Linear`` named ``classifier`` applied to
    the normalised image embedding, so rules that read a classifier's weight rows (the paper's
    weight-similarity references, Appendix A.1) see the cosine similarity of the prompts.

    Parameters
    ----------
    image_encoder : nn.Module
        Maps images (N, 3, H, W) to embeddings (N, D); Hugging Face style outputs are accepted.
    text_embeddings : tensor (P, D)
        One row per prompt; normalised here.
    scale : float
        The logit scale s (CLIP's ``logit_scale.exp()``, 100 for the released models).
    bias : float
        Added to every logit (SigLIP's ``logit_bias``); it changes no gradient.

    Example
    -------
    >>> enc = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    >>> head = ZeroShotHead(enc, torch.eye(4)[:2], scale=10.0)
    >>> head(torch.rand(1, 3, 8, 8)).shape
    torch.Size([1, 2])
    """

    def __init__(self, image_encoder: nn.Module, text_embeddings: torch.Tensor, scale: float = 100.0,
                 bias: float = 0.0):
        super().__init__()
        if not isinstance(image_encoder, nn.Module):
            raise TypeError(f"image_encoder must be a torch.nn.Module, got {type(image_encoder).__name__}")
        scale = _finite_float(scale, "scale")
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        bias = _finite_float(bias, "bias")
        emb = _normalised_embeddings(text_embeddings, int(getattr(text_embeddings, "shape", [0])[0]))
        self.image_encoder = image_encoder
        self.scale = scale
        self.bias = bias
        self.classifier = nn.Linear(emb.shape[1], emb.shape[0], bias=False)
        self.classifier.weight.requires_grad_(False)
        with torch.no_grad():
            self.classifier.weight.copy_(emb * scale)

    @property
    def embed_dim(self) -> int:
        return self.classifier.in_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        z = embeddings_from_output(self.image_encoder(images), "image_encoder")
        if z.shape[1] != self.embed_dim:
            raise ValueError(f"image_encoder returned embeddings of size {z.shape[1]} but the text "
                             f"embeddings have size {self.embed_dim}")
        z = z.float()
        z = z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)
        w = self.classifier.weight
        logits = z @ w.to(z.device).t()
        if self.bias:
            logits = logits + self.bias
        return logits


def _finite_float(value: object, name: str) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def encoder_layers(root: nn.Module, target_layer: Any) -> list[nn.Module]:
    """The target layers (a module, a dotted name inside ``root``, or a list) as modules, resolved
    by :func:`finercam.layers.resolve_layers`; they stay valid inside a wrapper of ``root``.

    >>> enc = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    >>> encoder_layers(enc, ["1", enc[0]]) == [enc[1], enc[0]]
    True
    """
    return [m for _, m in resolve_layers(root, target_layer, owner="the image encoder")]


def _encode_text_once(text_encoder: Callable, tokenizer: Callable, prompts: tuple[str, ...]) -> torch.Tensor:
    if not callable(text_encoder):
        raise TypeError(f"text_encoder must be callable, got {type(text_encoder).__name__}")
    if not callable(tokenizer):
        raise TypeError(f"tokenizer must be callable, got {type(tokenizer).__name__}")
    tokens = tokenizer(list(prompts))
    with torch.no_grad():
        out = text_encoder(**tokens) if isinstance(tokens, Mapping) else text_encoder(tokens)
    emb = embeddings_from_output(out, "text_encoder")
    if emb.shape[0] != len(prompts):
        raise ValueError(f"text_encoder returned {emb.shape[0]} embeddings for {len(prompts)} prompts")
    return emb


class ZeroShotFinerCAM:
    """Finer-CAM between text prompts of a zero-shot image-text model.

    With prompts p_1..p_P as the classes of :class:`ZeroShotHead`, the map for target prompt c
    against reference prompts t = 1..T is the engine's Eq. 8,

        alpha_k = (1/Z) sum_ij d(y_c - gamma * mean_t y_t) / dA_k^ij,
        L = ReLU(sum_k alpha_k A_k),        y_j = s * cos(f(x), e_j),

    (for Grad-CAM; every base method of :class:`finercam.FinerCAM` applies the same way). The text
    embeddings e_j are computed once here, from ``text_embeddings`` or from ``text_encoder`` and
    ``tokenizer``, and never again.

    Parameters
    ----------
    image_encoder : nn.Module
        Images (N, 3, H, W) -> embeddings (N, D).
    target_layer : module, dotted name inside ``image_encoder``, or a list of them
    prompts : list of str
        The prompts, in class order (``Explanation.targets`` index into it).
    text_embeddings : tensor (P, D), optional
        Precomputed embeddings of ``prompts``. Give either this or ``text_encoder`` + ``tokenizer``.
    text_encoder, tokenizer : callables, optional
        ``text_encoder(tokenizer(prompts))`` (or ``text_encoder(**tokens)`` when the tokenizer
        returns a mapping) gives the (P, D) embeddings.
    scale : float
        Logit scale s (default 100, CLIP's).
    method, gamma, num_references, reference_rule, aggregate, objective, **options
        Passed to :class:`finercam.FinerCAM` unchanged (gamma None: the engine's default, 0.6).
        ``num_references`` defaults to ``min(3, P - 1)``; ``classifier`` defaults to the head's
        ``classifier`` (so ``reference_rule="weight_similarity"`` ranks prompts by the cosine
        similarity of their text embeddings).

    Example
    -------
    >>> from finercam.world.zeroshot import load_dual_encoder
    >>> model = load_dual_encoder()
    >>> zs = ZeroShotFinerCAM(model.image_encoder, model.target_layer, prompts=["a red wing", "a bird"],
    ...                       text_encoder=model.text_encoder, tokenizer=model.tokenizer,
    ...                       scale=model.scale)
    >>> exp = zs.explain(torch.rand(2, 3, 96, 96), target="a red wing", references=["a bird"])
    >>> exp.targets.tolist(), exp.references.tolist(), exp.maps.shape
    ([0, 0], [[1], [1]], (2, 96, 96))
    """

    def __init__(self, image_encoder: nn.Module, target_layer: Any, *, prompts: PromptList,
                 text_embeddings: Optional[torch.Tensor] = None, text_encoder: Optional[Callable] = None,
                 tokenizer: Optional[Callable] = None, scale: float = 100.0, bias: float = 0.0,
                 method: str = "gradcam", gamma: Optional[float] = None, num_references: Optional[int] = None,
                 reference_rule: str = "nearest_logit", aggregate: str = "mean", objective: str = "paper",
                 **options: Any):
        if not isinstance(image_encoder, nn.Module):
            raise TypeError(f"image_encoder must be a torch.nn.Module, got {type(image_encoder).__name__}")
        self.prompts: tuple[str, ...] = check_prompts(prompts)
        self._index = {p: i for i, p in enumerate(self.prompts)}
        if text_embeddings is not None:
            if text_encoder is not None or tokenizer is not None:
                raise ValueError("give either text_embeddings or text_encoder and tokenizer, not both")
            emb = text_embeddings
        else:
            if text_encoder is None or tokenizer is None:
                raise ValueError("give text_embeddings, or both text_encoder and tokenizer")
            emb = _encode_text_once(text_encoder, tokenizer, self.prompts)
        emb = _normalised_embeddings(emb, len(self.prompts))
        layers = encoder_layers(image_encoder, target_layer)
        self.head = ZeroShotHead(image_encoder, emb, scale=scale, bias=bias)
        if num_references is None:
            num_references = min(3, len(self.prompts) - 1)
        # The prompts' "classifier weights" (reference_rule="weight_similarity") are the scaled
        # text embeddings: their cosine similarity ranks the prompts.
        options.setdefault("classifier", self.head.classifier)
        self.cam = FinerCAM(self.head, layers, method=method, gamma=gamma,
                            num_references=num_references, reference_rule=reference_rule,
                            aggregate=aggregate, objective=objective, **options)

    @property
    def text_embeddings(self) -> torch.Tensor:
        """The cached, unit-norm text embeddings (P, D), one row per prompt."""
        return self.head.classifier.weight.detach() / self.head.scale

    def prompt_index(self, prompt: str, name: str = "target") -> int:
        """Position of ``prompt`` in :attr:`prompts` (a ``ValueError`` naming ``name`` if absent)."""
        if not isinstance(prompt, str):
            raise TypeError(f"{name} must be a prompt string, got {type(prompt).__name__}")
        try:
            return self._index[prompt]
        except KeyError:
            raise ValueError(f"{name} {prompt!r} is not one of the prompts {list(self.prompts)}") from None

    def _targets(self, target: Any, n: int) -> Optional[list[int]]:
        if target is None:
            return None
        if isinstance(target, str):
            return [self.prompt_index(target)] * n
        if isinstance(target, Sequence):
            if len(target) != n:
                raise ValueError(f"target has {len(target)} prompts for {n} images")
            return [self.prompt_index(t) for t in target]
        raise TypeError(f"target must be a prompt string or one prompt per image, got {type(target).__name__}")

    def _references(self, references: Any, n: int) -> Optional[list[list[int]]]:
        if references is None:
            return None
        if isinstance(references, str):
            references = [references]
        if not isinstance(references, Sequence) or len(references) == 0:
            raise ValueError("references must be a non-empty list of prompts, or one such list per image")
        if all(isinstance(r, str) for r in references):
            row = [self.prompt_index(r, "reference") for r in references]
            return [list(row) for _ in range(n)]
        if len(references) != n:
            raise ValueError(f"references has {len(references)} lists for {n} images")
        out = []
        for i, refs in enumerate(references):
            if isinstance(refs, str) or not isinstance(refs, Sequence) or len(refs) == 0:
                raise ValueError(f"references[{i}] must be a non-empty list of prompts")
            out.append([self.prompt_index(r, f"references[{i}] entry") for r in refs])
        return out

    def explain(self, images: torch.Tensor, target: Union[str, Sequence[str], None] = None,
                references: Union[str, Sequence[str], Sequence[Sequence[str]], None] = None):
        """Explain ``target`` against ``references`` (prompt strings) on ``images``.

        ``target``: one prompt for every image, one per image, or None (the best-scoring prompt).
        ``references``: a prompt or list of prompts for every image, one list per image, or None
        (chosen among the other prompts by the ``reference_rule``). Several references are
        averaged as in Eq. 8. Returns a :class:`finercam.Explanation` whose class ids index
        :attr:`prompts`.
        """
        n = int(images.shape[0]) if isinstance(images, torch.Tensor) and images.ndim >= 1 else 0
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a torch tensor (N, C, H, W), got {type(images).__name__}")
        targets = self._targets(target, n)
        refs = self._references(references, n)
        if targets is not None and refs is not None:
            for i, (t, r) in enumerate(zip(targets, refs, strict=True)):
                if t in r:
                    raise ValueError(f"references for image {i} include the target prompt {self.prompts[t]!r}")
        return self.cam(images, targets=targets, references=refs)

    __call__ = explain
