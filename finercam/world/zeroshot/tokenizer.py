"""A closed-vocabulary word tokenizer for the tiny dual encoder.

The tiny model knows only the words of its bird world (colours, parts, shapes and a few template
words). A prompt with any other word is refused with a ``ValueError`` that names the unknown words,
rather than being mapped to an "unknown" token whose embedding would mean nothing.
"""
from __future__ import annotations

import re
from typing import Iterable, Sequence, Union

import torch

__all__ = ["WordTokenizer"]

_WORD = re.compile(r"[a-z]+")
_ALLOWED = re.compile(r"^[a-zA-Z\s,.;'\-]*$")


class WordTokenizer:
    """Lower-cases, splits on anything that is not a letter, and maps words to ids.

    Id 0 is padding; words get ids 1..V in the order given. Output: a LongTensor (N, L) padded
    with zeros to the longest prompt, at most ``context_length`` tokens.

    Example
    -------
    >>> tok = WordTokenizer(["a", "bird", "red", "wing", "with"])
    >>> tok(["a bird with a red wing", "red wing"]).tolist()
    [[1, 2, 5, 1, 3, 4], [3, 4, 0, 0, 0, 0]]
    """

    def __init__(self, words: Iterable[str], context_length: int = 40):
        vocab = list(dict.fromkeys(w.lower() for w in words))
        bad = [w for w in vocab if not _WORD.fullmatch(w)]
        if bad:
            raise ValueError(f"words must be letters only, got {bad}")
        if not vocab:
            raise ValueError("words is empty")
        if isinstance(context_length, bool) or not isinstance(context_length, int) or context_length < 1:
            raise ValueError(f"context_length must be a positive int, got {context_length!r}")
        self.words: tuple[str, ...] = tuple(vocab)
        self.ids = {w: i + 1 for i, w in enumerate(self.words)}
        self.context_length = context_length

    @property
    def vocab_size(self) -> int:
        """Number of ids including padding."""
        return len(self.words) + 1

    def split(self, text: str) -> list[str]:
        """The words of ``text``; ``ValueError`` naming unknown words or characters."""
        if not isinstance(text, str):
            raise TypeError(f"prompt must be a string, got {type(text).__name__}")
        if not _ALLOWED.match(text):
            odd = sorted({ch for ch in text if not re.match(r"[a-zA-Z\s,.;'\-]", ch)})
            raise ValueError(f"prompt {text!r} has characters the tiny model cannot read: {odd}")
        words = _WORD.findall(text.lower())
        if not words:
            raise ValueError(f"prompt {text!r} has no words")
        unknown = sorted({w for w in words if w not in self.ids})
        if unknown:
            raise ValueError(f"prompt {text!r} has words outside the vocabulary: {unknown} "
                             f"(known words: {', '.join(self.words)})")
        if len(words) > self.context_length:
            raise ValueError(f"prompt {text!r} has {len(words)} words, more than context_length="
                             f"{self.context_length}")
        return words

    def __call__(self, texts: Union[str, Sequence[str]]) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        if len(texts) == 0:
            raise ValueError("texts is empty")
        rows = [[self.ids[w] for w in self.split(t)] for t in texts]
        out = torch.zeros(len(rows), max(len(r) for r in rows), dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return out
