"""Finer-CAM for CLIP-style zero-shot models (paper, Sections 3.3 and 4.3, Appendix A.2 and C.4).

* :class:`ZeroShotFinerCAM`: compare text prompts ("a black wing" against "a bird") on any image
  encoder with cached text embeddings; every option of :class:`finercam.FinerCAM` applies.
* :func:`from_open_clip`, :func:`from_huggingface`: duck-typed adapters (neither library is
  imported).

The bird world's tiny dual encoder (a model to try this on, shipped with the package) and the
prompt-localisation study live in :mod:`finercam.world.zeroshot`; this package is the engine part
and imports nothing from the world.

Example
-------
>>> import torch
>>> from finercam.zeroshot import ZeroShotFinerCAM
>>> from finercam.world.zeroshot import load_dual_encoder
>>> model = load_dual_encoder()
>>> zs = ZeroShotFinerCAM(model.image_encoder, model.target_layer,
...                       prompts=["a black wing", "a bird"], text_encoder=model.encode_text,
...                       tokenizer=model.tokenizer, scale=model.scale)
>>> exp = zs.explain(torch.rand(2, 3, 96, 96), target="a black wing", references=["a bird"])
>>> exp.maps.shape
(2, 96, 96)
"""
from .adapters import HFImageEncoder, OpenCLIPImageEncoder, from_huggingface, from_open_clip
from .head import ZeroShotFinerCAM, ZeroShotHead

__all__ = ["ZeroShotFinerCAM", "ZeroShotHead", "from_open_clip", "from_huggingface",
           "OpenCLIPImageEncoder", "HFImageEncoder"]
