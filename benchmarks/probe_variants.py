"""Fill ``finercam probe``'s feature cache for several (layer, pooling) variants in ONE backbone pass.

``finercam probe`` extracts the features of one layer and one pooling per run (a full forward of
every image each time: about 0.1 s per 224 x 224 image on one CPU core). To compare poolings and
layers on the same renders, this script runs the frozen backbone once per image with a hook on
every named layer, pools each captured output with :func:`finercam.probe.pool_features` (the very
function the probe's forward applies), and writes the chunks where ``finercam probe --layer L
--pooling P`` with the same ``--data``, ``--backbone`` and ``--cache`` looks for them (the same
identity, hence the same key). Each ``finercam probe`` run then only fits and saves its head::

    python benchmarks/probe_variants.py --data cub:ROOT --cache FEATS \\
        --variant _bn1:avg --variant _bn1:avgmax --variant _bn1:grid2 --variant _blocks.15:avgmax
    python -m finercam probe --data cub:ROOT --cache FEATS --layer _bn1 --pooling grid2 --out probe.pt

With ``--world N FILE...`` it instead measures probe files (the world's own format or ``finercam
probe``'s, as :func:`finercam.world.models.probe.load_probe` reads them) on the bird world's first
``N`` fresh test images rendered at 224 x 224 (``datasets.generate(N, seed=0, split="test",
size=224)``: no JPEG, no centre crop; what the demo and ``benchmarks/ablation.py`` feed the
world's probe), again with one backbone pass for all files.

Only the ``imagenet`` backbone at 224, with its centre crop or (``--resize``, as ``finercam probe
--resize``) without, is supported: what the comparison of issue 22 needs.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch


def _identity(layer: str, pooling: str, data: str, pre: Dict[str, Any], split_key: str) -> Dict[str, Any]:
    # exactly the dict finercam.apps.probe_command.run builds, plus train_probe's "split"
    return {"backbone": "imagenet", "layer": layer, "pooling": pooling, "data": data, "preprocessing": pre,
            "train_split": "train", "eval_split": "test", "split": split_key}


def fill(dataset: Any, model: torch.nn.Module, variants: Sequence[Tuple[str, str]], folders: List[Path],
         batch: int, label: str) -> float:
    """Pool every variant of every image of ``dataset`` into its folder's chunks; returns seconds."""
    from tqdm.auto import tqdm  # type: ignore[import-untyped]

    from finercam.probe import CACHE_CHUNK, _first_tensor, pool_features

    n = len(dataset)
    t0 = time.time()
    layers = sorted({layer for layer, _ in variants})
    bar = tqdm(total=n, unit="img", desc=label, dynamic_ncols=True)
    taken: Dict[str, Any] = {}  # each hooked layer's output, per batch
    for k in range(math.ceil(n / CACHE_CHUNK)):
        paths = [f / f"chunk_{k:05d}.npz" for f in folders]
        if all(p.is_file() for p in paths):
            bar.update(min(CACHE_CHUNK, n - k * CACHE_CHUNK))
            continue
        feats: List[List[np.ndarray]] = [[] for _ in variants]
        labels = []
        for lo in range(k * CACHE_CHUNK, min(n, (k + 1) * CACHE_CHUNK), batch):
            items = [dataset[i] for i in range(lo, min(n, (k + 1) * CACHE_CHUNK, lo + batch))]
            taken.clear()
            handles = [model.get_submodule(name).register_forward_hook(
                lambda m, a, out, name=name: taken.__setitem__(name, out)) for name in layers]
            try:
                with torch.no_grad():
                    model(torch.stack([it[0] for it in items]))
            finally:
                for h in handles:
                    h.remove()
            for v, (layer, pooling) in enumerate(variants):
                feats[v].append(pool_features(_first_tensor(taken[layer]), pooling).float().numpy())
            labels.append(np.array([int(it[1]) for it in items], np.int64))
            bar.update(len(items))
        for v, path in enumerate(paths):
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, features=np.concatenate(feats[v]), labels=np.concatenate(labels))
            tmp.replace(path)
    bar.close()
    return time.time() - t0


def world_accuracy(files: Sequence[str], n: int, batch: int = 32) -> Dict[str, float]:
    """Top-1 accuracy of each probe file on the world's first ``n`` fresh 224 x 224 test renders."""
    from finercam.probe import pool_features
    from finercam.world import datasets
    from finercam.world.models.probe import load_probe

    probes = [load_probe(Path(f)) for f in files]
    base = probes[0]
    rows = [(p.feature_layers, p.pooling, p.activation, p._fc) for p in probes]
    layers = sorted({layer for p in probes for layer in p.feature_layers})
    correct = np.zeros(len(files))
    taken: Dict[str, torch.Tensor] = {}
    handles = [base.get_submodule(name).register_forward_hook(
        lambda m, a, out, name=name: taken.__setitem__(name, out)) for name in layers]
    try:
        for lo in range(0, n, batch):
            b = datasets.generate(min(batch, n - lo), seed=0, split="test", start=lo, size=base.input_size)
            with torch.no_grad():
                base.pooled(torch.from_numpy(b.images))
                for i, (feature_layers, pooling, activation, fc) in enumerate(rows):
                    feats = [taken[layer] for layer in feature_layers]
                    feats = [base._swish(f) if activation and layer == "_bn1" else f
                             for f, layer in zip(feats, feature_layers, strict=True)]
                    x = torch.cat([pool_features(f, pooling) for f in feats], dim=1)
                    correct[i] += int((fc(x).argmax(1).numpy() == b.labels).sum())
    finally:
        for h in handles:
            h.remove()
    return {f: float(c / n) for f, c in zip(files, correct, strict=True)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    from finercam.evaluation.datasets import open_dataset, parse_spec
    from finercam.probe import POOLINGS, _dataset_key, preprocessing_view
    from finercam.world.models.imagenet import load_imagenet

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", metavar="NAME:ROOT")
    p.add_argument("--cache", help="finercam probe's --cache folder")
    p.add_argument("--variant", action="append", metavar="LAYER:POOLING")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--resize", action="store_true", help="as finercam probe --resize: no centre crop")
    p.add_argument("--world", type=int, default=0, metavar="N", help="measure FILES on N world renders")
    p.add_argument("files", nargs="*", help="probe files (with --world)")
    args = p.parse_args(argv)
    if args.world:
        print(json.dumps({"world_images": args.world, "accuracy": world_accuracy(args.files, args.world, args.batch)}))
        return 0
    if not (args.data and args.cache and args.variant):
        p.error("--data, --cache and --variant are required (or --world N FILE...)")
    variants = [tuple(v.rsplit(":", 1)) for v in args.variant]
    for layer, pooling in variants:
        if pooling not in POOLINGS:
            p.error(f"--variant {layer}:{pooling}: pooling must be one of {POOLINGS}")
    name, root, _ = parse_spec(args.data)
    net = load_imagenet()  # the backbone of `finercam probe --backbone imagenet`, centre-cropped there
    pre = {"mode": "resize" if args.resize else "center_crop", "size": net.size, "mean": list(net.mean),
           "std": list(net.std)}
    view = preprocessing_view(pre)
    seconds = {}
    for split, split_key in (("train", "train"), ("test", "eval")):
        ds = open_dataset(f"{name}:{root}:{split}", view=view)
        folders = []
        for layer, pooling in variants:
            ident = {**_identity(layer, pooling, f"{name}:{root}", pre, split_key), "n": len(ds)}
            folder = Path(args.cache) / _dataset_key(ident)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "identity.json").write_text(json.dumps(ident, indent=1, default=str))
            folders.append(folder)
        seconds[split] = round(fill(ds, net.model.eval(), variants, folders, args.batch, f"features ({split})"), 1)
    print(json.dumps({"variants": [":".join(v) for v in variants], "seconds": seconds}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
