"""Finer-CAM for CLIP-style zero-shot models (paper, Sections 3.3 and 4.3, Appendix A.2 and C.4).

* :class:`ZeroShotFinerCAM`: compare text prompts ("a black wing" against "a bird") on any image
  encoder with cached text embeddings; every option of :class:`finercam.FinerCAM` applies.
* :func:`from_open_clip`, :func:`from_huggingface`: duck-typed adapters (neither library is
  imported).
* :func:`load_dual_encoder`: the tiny dual encoder trained on the bird world, shipped with the
  package (``python -m finercam.zeroshot.train`` retrains it).
* :mod:`finercam.zeroshot.study`: the prompt-localisation study and the faithfulness examination.

Example
-------
>>> import torch
>>> from finercam.zeroshot import ZeroShotFinerCAM, load_dual_encoder
>>> model = load_dual_encoder()
>>> zs = ZeroShotFinerCAM(model.image_encoder, model.target_layer,
...                       prompts=["a black wing", "a bird"], text_encoder=model.encode_text,
...                       tokenizer=model.tokenizer, scale=model.scale)
>>> exp = zs.explain(torch.rand(2, 3, 96, 96), target="a black wing", references=["a bird"])
>>> exp.maps.shape
(2, 96, 96)
"""
from .adapters import HFImageEncoder, OpenCLIPImageEncoder, from_huggingface, from_open_clip
from .dual_encoder import DualEncoder, load_dual_encoder
from .head import ZeroShotFinerCAM, ZeroShotHead
from .tokenizer import WordTokenizer

__all__ = ["ZeroShotFinerCAM", "ZeroShotHead", "from_open_clip", "from_huggingface",
           "OpenCLIPImageEncoder", "HFImageEncoder", "DualEncoder", "load_dual_encoder",
           "WordTokenizer"]
