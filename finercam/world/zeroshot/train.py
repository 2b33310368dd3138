"""Train the tiny dual encoder: ``python -m finercam.world.zeroshot.train [--epochs E] [--out PATH]``.

Contrastive (CLIP) training on generated bird images with random captions of their attributes
(:func:`finercam.world.zeroshot.captions.random_caption`). Because many captions in a batch are true of
many images ("a bird", "a black eye"), the targets are soft: image i's target over the batch's
captions is uniform over the captions consistent with its class, and symmetrically for captions.
A second term classifies each image among the 16 full class captions, the zero-shot task itself.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..datasets import birds, generate
from .captions import class_prompts, consistent, random_caption, vocabulary
from .dual_encoder import WEIGHTS, DualEncoder

__all__ = ["train", "zero_shot_accuracy", "main"]


def _soft_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    target = target / target.sum(dim=1, keepdim=True)
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


@torch.no_grad()
def zero_shot_accuracy(model: DualEncoder, n: int = 512, seed: int = 0, split: str = "test",
                       batch: int = 256) -> float:
    """Top-1 accuracy of ``model`` on ``n`` generated images against the class captions.

    An image's prediction is the caption of largest cosine similarity,
    :math:`\\arg\\max_c \\cos(e_{\\mathrm{image}}, e_{\\mathrm{caption}_c})`.

    >>> from finercam.world.zeroshot.dual_encoder import load_dual_encoder
    >>> acc = zero_shot_accuracy(load_dual_encoder(), n=16)
    >>> 0.5 < acc <= 1.0
    True
    """
    tokens = model.tokenizer(class_prompts())
    was = model.training
    model.eval()
    try:
        text = F.normalize(model.encode_text(tokens), dim=-1)
        correct = 0
        for start in range(0, n, batch):
            b = generate(min(batch, n - start), seed=seed, split=split, start=start)
            img = F.normalize(model.encode_image(torch.from_numpy(b.images)), dim=-1)
            correct += int((img @ text.t()).argmax(1).eq(torch.from_numpy(b.labels)).sum())
    finally:
        model.train(was)
    return correct / n


def train(epochs: int = 8, n_train: int = 8192, batch: int = 128, lr: float = 3e-3, seed: int = 0,
          out: Optional[Path] = None, log=print) -> DualEncoder:
    """Train a :class:`DualEncoder` from scratch and save it (float16) to ``out``.

    Each step takes ``batch`` images :math:`x_i` of classes :math:`y_i`, one random caption
    :math:`t_j` per image, and minimises

    .. math::

        \\mathcal{L} = \\tfrac12 \\left[ H(\\hat M, \\operatorname{softmax}_j(s\\, S))
        + H(\\hat M^\\top, \\operatorname{softmax}_i(s\\, S^\\top)) \\right]
        + \\operatorname{CE}(s\\, \\cos(e(x_i), e(\\text{caption}_c)), y_i),

    where :math:`S_{ij} = \\cos(e(x_i), e(t_j))`, :math:`s = \\exp(\\text{logit\\_scale})`
    (clamped to :math:`[1, 100]`), :math:`M_{ij} = 1` when caption :math:`j` is true of class
    :math:`y_i` (:func:`finercam.world.zeroshot.captions.consistent`), :math:`\\hat M` its rows
    normalised to sum to 1, :math:`H(p, q) = -\\frac1B \\sum_i \\sum_j p_{ij} \\log q_{ij}`, and the
    last term classifies each image among the 16 class captions. AdamW (weight decay 1e-4 on
    the weight matrices), learning rate
    :math:`\\text{lr} \\cdot \\min(1, (k+1)/100) \\cdot \\frac12 (1 + \\cos(\\pi k / K))` at step
    :math:`k` of :math:`K = \\text{epochs} \\cdot \\lfloor n_\\text{train} / \\text{batch} \\rfloor`.
    After every epoch the zero-shot accuracy on 256 validation images is logged and, when
    ``out`` is given, the weights are saved (an interrupted run leaves usable weights).
    ``log`` receives the progress lines. Returns the model in eval mode.

    One epoch of one batch, written to a temporary folder:

    >>> import tempfile
    >>> from pathlib import Path
    >>> from finercam.world.datasets import generate
    >>> from finercam.world.zeroshot.dual_encoder import load_dual_encoder
    >>> out = Path(tempfile.mkdtemp()) / "dual_encoder.pt"
    >>> model = train(epochs=1, n_train=8, batch=8, out=out, log=lambda msg: None)
    >>> model.training, 1.0 <= model.scale <= 100.0
    (False, True)
    >>> images = torch.from_numpy(generate(2, split="test").images)
    >>> load_dual_encoder(out).classify(images, ["a bird", "a red crest"]).shape
    torch.Size([2, 2])
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    t0 = time.time()
    data = generate(n_train, seed=seed, split="train", dtype=np.uint8)
    images = torch.from_numpy(data.images)
    labels = torch.from_numpy(data.labels)
    log(f"generated {n_train} training images in {time.time() - t0:.1f} s")
    model = DualEncoder(vocabulary())
    class_tokens = model.tokenizer(class_prompts())
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    rest = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 1e-4}, {"params": rest, "weight_decay": 0.0}], lr=lr)
    steps = epochs * (n_train // batch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    step = 0
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(n_train)
        total = 0.0
        for i in range(n_train // batch):
            idx = perm[i * batch:(i + 1) * batch]
            x = images[idx].float() / 255.0
            y = labels[idx]
            caps, truth = [], []
            for c in y.tolist():
                text, facts = random_caption(c, rng)
                caps.append(text)
                truth.append([consistent(facts, k) for k in range(birds.NUM_CLASSES)])
            truth_t = torch.tensor(truth, dtype=torch.float32)  # (B captions, classes)
            match = truth_t[:, y].t()  # match[i, j]: caption j true of image i
            tokens = model.tokenizer(caps)
            img = F.normalize(model.encode_image(x), dim=-1)
            txt = F.normalize(model.encode_text(torch.cat([tokens_pad(tokens, class_tokens.shape[1]),
                                                           tokens_pad(class_tokens, tokens.shape[1])])), dim=-1)
            cap_txt, cls_txt = txt[:batch], txt[batch:]
            s = model.logit_scale.exp()
            logits = s * img @ cap_txt.t()
            loss = 0.5 * (_soft_ce(logits, match) + _soft_ce(logits.t(), match.t()))
            loss = loss + F.cross_entropy(s * img @ cls_txt.t(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0.0, math.log(100.0))
            total += float(loss.detach())
            step += 1
            if step % 16 == 0:
                log(f"  step {step}/{steps}: loss {float(loss.detach()):.3f}, {time.time() - t0:.0f} s")
        acc = zero_shot_accuracy(model, n=256, split="val")
        log(f"epoch {epoch + 1}/{epochs}: loss {total / (n_train // batch):.3f}, scale {model.scale:.1f}, "
            f"val zero-shot accuracy {acc:.3f}, {time.time() - t0:.0f} s")
        if out is not None:  # after every epoch, so that an interrupted run leaves usable weights
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            model.save(out)
    model.eval()
    if out is not None:
        log(f"saved {out} ({Path(out).stat().st_size / 1e6:.2f} MB)")
    return model


def tokens_pad(tokens: torch.Tensor, length: int) -> torch.Tensor:
    """Right-pad token ids with zeros to at least ``length`` columns."""
    if tokens.shape[1] >= length:
        return tokens
    return F.pad(tokens, (0, length - tokens.shape[1]))


def main(argv=None) -> int:
    """``python -m finercam.world.zeroshot.train [options]``: train the tiny dual encoder, save its
    weights to ``--out`` and print its zero-shot test accuracy; returns the exit status.

    A bad option exits with status 2 before any training (argparse prints it on stderr):

    >>> main(["--epochs", "two"])
    Traceback (most recent call last):
    ...
    SystemExit: 2
    """
    p = argparse.ArgumentParser(prog="python -m finercam.world.zeroshot.train", description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--n-train", type=int, default=8192)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=WEIGHTS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = train(args.epochs, args.n_train, args.batch, args.lr, args.seed, args.out)
    print(f"test zero-shot accuracy: {zero_shot_accuracy(model, n=1024):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
