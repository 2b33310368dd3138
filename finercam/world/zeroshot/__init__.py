"""The bird world's zero-shot model: a tiny dual encoder, its tokenizer, captions and study.

* :func:`load_dual_encoder`: the tiny dual encoder trained on the bird world, shipped with the
  package (``python -m finercam.world.zeroshot.train`` retrains it).
* :mod:`finercam.world.zeroshot.study`: the prompt-localisation study and the faithfulness
  examination.

The engine part, :class:`finercam.ZeroShotFinerCAM` and the open_clip / Hugging Face adapters,
lives in :mod:`finercam.zeroshot`.
"""
from .dual_encoder import DualEncoder, load_dual_encoder
from .tokenizer import WordTokenizer

__all__ = ["DualEncoder", "load_dual_encoder", "WordTokenizer"]
