"""Adapters for the two CLIP ecosystems: open_clip models and Hugging Face ``CLIPModel``.

Both are duck-typed: nothing here imports ``open_clip`` or ``transformers``. They wrap the user's
model (unchanged: no hooks are left on it, no parameter or mode is touched) into the image encoder
and the text encoder that :class:`~finercam.zeroshot.ZeroShotFinerCAM` expects, and read the logit
scale (``logit_scale.exp()``) and, where present, ``logit_bias`` from the model.

* open_clip: ``model.encode_image(images)``, ``model.encode_text(tokens)``, and its tokenizer
  (``open_clip.get_tokenizer(name)``: a list of strings -> a LongTensor).
* Hugging Face: ``model.get_image_features(pixel_values=...)``,
  ``model.get_text_features(input_ids=..., attention_mask=...)``, and its ``CLIPProcessor`` or
  tokenizer (called as ``processor(text=prompts, return_tensors="pt", padding=True)``).

Target layers are modules or dotted names inside the user's model, e.g.
``"visual.transformer.resblocks.11"`` (open_clip ViT) or ``"vision_model.encoder.layers.11"``
(Hugging Face).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence, cast

import torch
from torch import nn

from .head import ZeroShotFinerCAM, embeddings_from_output, encoder_layers

__all__ = ["OpenCLIPImageEncoder", "HFImageEncoder", "from_open_clip", "from_huggingface"]


def _require(model: Any, names: Sequence[str], kind: str) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module ({kind}), got {type(model).__name__}")
    missing = [n for n in names if not callable(getattr(model, n, None))]
    if missing:
        raise TypeError(f"model has no {', '.join(missing)}: not a {kind} model")


def _logit_scale(model: nn.Module) -> tuple[float, float]:
    """(scale, bias) from ``logit_scale`` (stored as a log, as CLIP does) and ``logit_bias``."""
    scale, bias = 100.0, 0.0
    ls = getattr(model, "logit_scale", None)
    if isinstance(ls, torch.Tensor) and ls.numel() == 1:
        scale = float(ls.detach().float().exp())
    lb = getattr(model, "logit_bias", None)
    if isinstance(lb, torch.Tensor) and lb.numel() == 1:
        bias = float(lb.detach().float())
    return scale, bias


class OpenCLIPImageEncoder(nn.Module):
    """``forward(x) = model.encode_image(x)`` for an open_clip model.

    Any module with ``encode_image`` works; a stand-in for the example:

    >>> class Clip(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.visual = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    ...     def encode_image(self, x):
    ...         return self.visual(x)
    >>> OpenCLIPImageEncoder(Clip())(torch.zeros(2, 3, 2, 2)).shape
    torch.Size([2, 4])
    >>> OpenCLIPImageEncoder(nn.Linear(2, 2))
    Traceback (most recent call last):
    ...
    TypeError: model has no encode_image: not a open_clip model
    """

    model: Any  # duck-typed: an nn.Module with encode_image (not an nn.Module attribute to mypy)

    def __init__(self, model: nn.Module):
        super().__init__()
        _require(model, ("encode_image",), "open_clip")
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images)


class HFImageEncoder(nn.Module):
    """``forward(x) = model.get_image_features(pixel_values=x)`` for a Hugging Face CLIPModel.

    The embeddings are taken from a tensor or from ``pooler_output`` (transformers 5); a
    stand-in for the example:

    >>> class Clip(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.vision = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    ...     def get_image_features(self, pixel_values):
    ...         return {"pooler_output": self.vision(pixel_values)}
    >>> HFImageEncoder(Clip())(torch.zeros(2, 3, 2, 2)).shape
    torch.Size([2, 4])
    """

    model: Any  # duck-typed: an nn.Module with get_image_features

    def __init__(self, model: nn.Module):
        super().__init__()
        _require(model, ("get_image_features",), "Hugging Face CLIPModel")
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return embeddings_from_output(self.model.get_image_features(pixel_values=images), "get_image_features")


def from_open_clip(model: nn.Module, tokenizer: Callable, target_layer: Any, prompts: Sequence[str],
                   **options: Any) -> ZeroShotFinerCAM:
    """A :class:`ZeroShotFinerCAM` for an open_clip model and its tokenizer.

    The prompts are encoded once with ``model.encode_text(tokenizer(prompts))``; logits are
    ``model.logit_scale.exp() * cos + logit_bias`` as in open_clip's own forward. ``options`` go to
    :class:`ZeroShotFinerCAM` (method, gamma, ..., ``scale`` to override the model's).

    Example (with open_clip installed)::

        import open_clip
        model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained="openai")
        zs = from_open_clip(model, open_clip.get_tokenizer("ViT-B-32"),
                            "visual.transformer.resblocks.11", ["red epaulets", "bird"])
        exp = zs.explain(images, target="red epaulets", references=["bird"])

    The tiny dual encoder has open_clip's interface:

    >>> import torch
    >>> from finercam.world.zeroshot import load_dual_encoder
    >>> tiny = load_dual_encoder()
    >>> zs = from_open_clip(tiny, tiny.tokenizer, "image_encoder.layer3", ["a black wing", "a bird"])
    >>> zs.explain(torch.rand(1, 3, 96, 96), target="a black wing", references=["a bird"]).maps.shape
    (1, 96, 96)
    """
    _require(model, ("encode_image", "encode_text"), "open_clip")
    layers = encoder_layers(model, target_layer)
    scale, bias = _logit_scale(model)
    options.setdefault("scale", scale)
    options.setdefault("bias", bias)
    return ZeroShotFinerCAM(OpenCLIPImageEncoder(model), layers, prompts=prompts,
                            text_encoder=cast(Callable, model.encode_text), tokenizer=tokenizer, **options)


def from_huggingface(model: nn.Module, processor: Callable, target_layer: Any, prompts: Sequence[str],
                     **options: Any) -> ZeroShotFinerCAM:
    """A :class:`ZeroShotFinerCAM` for a Hugging Face ``CLIPModel`` and its processor or tokenizer.

    The prompts are tokenised once with ``processor(text=prompts, return_tensors="pt",
    padding=True)`` and encoded once with ``model.get_text_features``; logits equal the model's
    ``logits_per_image``. ViT layers such as ``"vision_model.encoder.layers.11"`` return a tuple in
    transformers 4; pass ``reshape=`` (see :class:`finercam.FinerCAM`) if the engine needs help.

    Example (with transformers and the weights at hand)::

        from transformers import CLIPModel, CLIPProcessor
        model = CLIPModel.from_pretrained("openai/clip-vit-base-patch32")
        zs = from_huggingface(model, CLIPProcessor.from_pretrained("openai/clip-vit-base-patch32"),
                              "vision_model.encoder.layers.11", ["red epaulets", "bird"])
        exp = zs.explain(pixel_values, target="red epaulets", references=["bird"])

    The tiny dual encoder, dressed in the ``CLIPModel`` interface, stands in here:

    >>> from finercam.world.zeroshot import load_dual_encoder
    >>> class TinyHF(nn.Module):
    ...     def __init__(self, tiny):
    ...         super().__init__()
    ...         self.tiny, self.logit_scale = tiny, tiny.logit_scale
    ...     def get_image_features(self, pixel_values):
    ...         return self.tiny.encode_image(pixel_values)
    ...     def get_text_features(self, input_ids, attention_mask=None):
    ...         return self.tiny.encode_text(input_ids)
    >>> tiny = load_dual_encoder()
    >>> def processor(text, return_tensors, padding):
    ...     return {"input_ids": tiny.tokenizer(text)}
    >>> zs = from_huggingface(TinyHF(tiny), processor, "tiny.image_encoder.layer3",
    ...                       ["a black wing", "a bird"])
    >>> zs.explain(torch.rand(1, 3, 96, 96), target="a black wing", references=["a bird"]).maps.shape
    (1, 96, 96)
    """
    _require(model, ("get_image_features", "get_text_features"), "Hugging Face CLIPModel")
    if not callable(processor):
        raise TypeError(f"processor must be callable, got {type(processor).__name__}")
    layers = encoder_layers(model, target_layer)
    scale, bias = _logit_scale(model)
    options.setdefault("scale", scale)
    options.setdefault("bias", bias)

    def tokenize(texts: list[str]) -> dict:
        enc = processor(text=texts, return_tensors="pt", padding=True)
        keys = [k for k in ("input_ids", "attention_mask", "position_ids") if k in enc]
        if "input_ids" not in keys:
            raise TypeError("processor returned no input_ids")
        return {k: enc[k] for k in keys}

    return ZeroShotFinerCAM(HFImageEncoder(model), layers, prompts=prompts,
                            text_encoder=cast(Callable, model.get_text_features), tokenizer=tokenize, **options)
