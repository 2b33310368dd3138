"""Cost of one training image for each of our models: forward, backward and an AdamW step on a
batch of 64 random images, at torch's thread count (``--threads``, default 2), best of 20 steps
after 3 warm-up steps. Multiply by the images of a run (``finercam.world.models.train.DEFAULTS``:
25,600 images x 12 epochs for the CNN, x 8 for the ViT, whose stem stays fixed) for its idle
wall time.

Run: ``python benchmarks/bench_training.py [--threads 2] [--batch 64] [--train-stem]``;
``--train-stem`` trains the ViT's stem too (the recipe from scratch) for comparison.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from finercam.world.models import MODELS, build
from finercam.world.models.train import DEFAULTS


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--train-stem", action="store_true", help="ViT: train the stem too (from scratch)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for name in MODELS:
        cfg = DEFAULTS[name]
        # as the training command does: channels-last, and a frozen stem where the defaults say so
        model = build(name).to(memory_format=torch.channels_last).train()
        if cfg.get("freeze_stem") and not args.train_stem:
            model.stem.requires_grad_(False)
            model.stem.eval()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-3)
        x = torch.rand(args.batch, 3, 96, 96).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 16, (args.batch,))
        times = []
        for step in range(23):
            t0 = time.perf_counter()
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step >= 3:
                times.append(time.perf_counter() - t0)
        per_image = min(times) / args.batch
        run = per_image * cfg["n_train"] * cfg["epochs"]
        label = f"{name} (stem trained)" if cfg.get("freeze_stem") and args.train_stem else name
        print(f"{label}: {per_image * 1e3:.2f} ms per training image ({args.threads} threads); "
              f"the default run ({int(cfg['n_train'])} images x {int(cfg['epochs'])} epochs) "
              f"about {run / 60:.1f} min")


if __name__ == "__main__":
    main()
