"""A tiny CLIP-style dual encoder for the bird world, shipped with the package.

An image encoder (a small residual CNN; its ``layer3`` gives a 12 x 12 grid at 96 x 96 input, the
CAM target layer) and a text encoder (two word convolutions over a closed vocabulary) map
images and captions into one 64-d space; ``logits = exp(logit_scale) * cos(image, text)``.
Trained contrastively by :mod:`finercam.world.zeroshot.train` on generated images and captions built
from their attributes ("a bird with a black wing and a grey beak").

The model mirrors open_clip's interface (``encode_image``, ``encode_text``, ``logit_scale``) so
:func:`finercam.zeroshot.from_open_clip` works on it as on a real CLIP.

Example
-------
>>> from finercam.world.zeroshot import load_dual_encoder
>>> model = load_dual_encoder()
>>> model.tokenizer(["a bird with a black wing"]).shape
torch.Size([1, 6])
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .tokenizer import WordTokenizer

__all__ = ["TinyImageEncoder", "TinyTextEncoder", "DualEncoder", "load_dual_encoder", "WEIGHTS"]

#: The shipped weights (float16).
WEIGHTS = Path(__file__).with_name("weights") / "dual_encoder.pt"


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = (nn.Identity() if cin == cout and stride == 1 else
                      nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.short(x))


class TinyImageEncoder(nn.Module):
    """Images (N, 3, H, W) in [0, 1] -> embeddings (N, D). ``layer3`` is the CAM layer (H/8 grid).

    >>> TinyImageEncoder(embed_dim=64)(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 64])
    """

    target_layer = "layer3"

    def __init__(self, embed_dim: int = 64, widths: Sequence[int] = (24, 32, 48, 64)):
        super().__init__()
        w0, w1, w2, w3 = widths
        self.stem = nn.Sequential(nn.Conv2d(3, w0, 3, 2, 1, bias=False), nn.BatchNorm2d(w0), nn.ReLU())
        self.layer1 = _Block(w0, w1, 2)
        self.layer2 = _Block(w1, w2, 2)
        self.layer3 = _Block(w2, w3, 1)
        self.proj = nn.Linear(w3, embed_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(images))))
        return self.proj(x.mean(dim=(2, 3)))


class TinyTextEncoder(nn.Module):
    """Token ids (N, L), 0 = padding -> embeddings (N, D).

    Two width-3 convolutions over word embeddings (a window sees "black rounded wing": the colour
    and shape words bound to their part), then masked mean and max pooling over positions.

    >>> enc = TinyTextEncoder(vocab_size=10, embed_dim=64)
    >>> enc(torch.tensor([[1, 2, 0], [3, 0, 0]])).shape
    torch.Size([2, 64])
    """

    def __init__(self, vocab_size: int, embed_dim: int = 64, width: int = 96):
        super().__init__()
        self.token = nn.Embedding(vocab_size, width, padding_idx=0)
        self.conv1 = nn.Conv1d(width, width, 3, padding=1)
        self.conv2 = nn.Conv1d(width, width, 3, padding=1)
        self.proj = nn.Linear(2 * width, embed_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        keep = (tokens != 0).unsqueeze(1)  # (N, 1, L)
        x = self.token(tokens).transpose(1, 2) * keep
        x = F.relu(self.conv1(x)) * keep
        x = F.relu(self.conv2(x) + x) * keep
        mean = x.sum(2) / keep.sum(2).clamp_min(1)
        peak = x.masked_fill(~keep, float("-inf")).amax(2)
        return self.proj(torch.cat([mean, peak], dim=1))


class DualEncoder(nn.Module):
    """Image and text towers with a learned logit scale (stored as a log, as CLIP does).

    ``forward(images, tokens)`` returns the (N_images, N_texts) logits
    ``exp(logit_scale) * cos(encode_image(images), encode_text(tokens))``.

    >>> from finercam.world.zeroshot.captions import vocabulary
    >>> model = DualEncoder(vocabulary())
    >>> model(torch.rand(2, 3, 32, 32), model.tokenizer(["a bird", "a red crest"])).shape
    torch.Size([2, 2])
    >>> round(model.scale, 2)                # exp(log(1 / 0.07)), CLIP's initial scale
    14.29
    """

    def __init__(self, words: Sequence[str], embed_dim: int = 64, context_length: int = 40):
        super().__init__()
        self.tokenizer = WordTokenizer(words, context_length)
        self.config = {"words": list(self.tokenizer.words), "embed_dim": embed_dim,
                       "context_length": context_length}
        self.image_encoder = TinyImageEncoder(embed_dim)
        self.text_encoder = TinyTextEncoder(self.tokenizer.vocab_size, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial 14.3

    #: Dotted name of the CAM layer inside :attr:`image_encoder`.
    target_layer = "layer3"

    @property
    def scale(self) -> float:
        return float(self.logit_scale.detach().exp())

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(images)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.text_encoder(tokens)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        a = F.normalize(self.encode_image(images), dim=-1)
        b = F.normalize(self.encode_text(tokens), dim=-1)
        return self.logit_scale.exp() * a @ b.t()

    @torch.no_grad()
    def classify(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        """Zero-shot logits (N, len(prompts)) of ``images`` against ``prompts``."""
        return self(images, self.tokenizer(list(prompts)))

    def save(self, path: Any) -> None:
        """Weights in float16 plus the config, for :func:`load_dual_encoder`."""
        state = {k: (v.half() if v.is_floating_point() else v) for k, v in self.state_dict().items()}
        torch.save({"config": self.config, "state_dict": state}, path)


def load_dual_encoder(path: Optional[Any] = None) -> DualEncoder:
    """The shipped tiny dual encoder (or one saved at ``path``), in eval mode, float32."""
    path = WEIGHTS if path is None else Path(path)
    if not Path(path).is_file():
        raise FileNotFoundError(f"no dual-encoder weights at {path}; train them with "
                                f"`python -m finercam.world.zeroshot.train`")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    cfg = blob["config"]
    model = DualEncoder(cfg["words"], cfg["embed_dim"], cfg["context_length"])
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()})
    return model.eval()
