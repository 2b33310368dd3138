"""The shipped models on fresh images: accuracy, per-class accuracy, and how often the references
Finer-CAM would pick (the highest non-target logits) are siblings of the predicted class.

Run: ``python benchmarks/model_accuracy.py [--n 1024] [--seed 2024] [--path cnn=FILE ...]``
(seed 2024 is never used in training; the training command evaluates on seed 0). The figures in
docs/dataset.md come from this script with its defaults.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from finercam.world import datasets, models
from finercam.world.datasets import birds


def report(name: str, path, n: int, seed: int) -> None:
    net = models.load(name, path)
    batch = datasets.generate(n, seed=seed, split="test")
    with torch.no_grad():
        logits = torch.cat([net(torch.from_numpy(batch.images[i:i + 256])) for i in range(0, n, 256)])
    pred = logits.argmax(1).numpy()
    per_class = [(pred[batch.labels == c] == c).mean() for c in range(len(birds.CLASS_NAMES))]
    print(f"{name}: accuracy {(pred == batch.labels).mean():.4f} on {n} fresh images (seed {seed}); "
          f"recorded at training {models.checkpoint(name, path)['test_accuracy']:.4f}")
    for c, acc in enumerate(per_class):
        print(f"  {birds.CLASS_NAMES[c]:<26} {acc:.2f}")
    # references as Finer-CAM picks them for the predicted class: the next highest logits
    order = logits.argsort(1, descending=True).numpy()
    sibling = np.array([[int(r) in birds.siblings(int(p)) for r in order[i][order[i] != p][:3]]
                        for i, p in enumerate(pred)])
    shares = " / ".join(f"{s:.0%}" for s in sibling.mean(0))
    print(f"  1st / 2nd / 3rd reference a sibling: {shares}; all three {sibling.all(1).mean():.0%}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--path", action="append", default=[], help="MODEL=FILE: another checkpoint")
    args = ap.parse_args()
    paths = dict(p.split("=", 1) for p in args.path)
    for name in models.MODELS:
        report(name, paths.get(name), args.n, args.seed)


if __name__ == "__main__":
    main()
