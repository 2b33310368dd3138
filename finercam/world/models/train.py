"""Train one of our models on the bird world and write its shipped weights.

    python -m finercam.world.models.train --model cnn
    python -m finercam.world.models.train --model vit

The training set is generated once into memory (uint8), then the model is trained with AdamW and a
one-cycle learning-rate schedule, without label smoothing (it would erase the similarity order of
the non-target logits that Finer-CAM's references come from), on ``--threads`` CPU threads
(default 2).
The ViT's conv stem is, by default, the trained CNN's first three layers, kept fixed
(``--stem-from cnn --freeze-stem``): train the CNN first. The weights are written in float16
with their architecture config, test accuracy and training record to
``finercam/world/models/weights/<model>.pt`` (or ``--out``).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .. import datasets
from . import MODELS, WEIGHTS_DIR, SmallCNN, SmallViT, build, load

__all__ = ['DEFAULTS', 'accuracy', 'train', 'transfer_stem', 'add_arguments', 'check_arguments', 'run', 'main']

#: Per-model defaults, timed with the data on 2 idle cores (docs/dataset.md). CNN: from scratch,
#: 8.6 minutes, 96.1 % (the shipped weights: the same settings before channels-last, 96.5 %).
#: ViT, the shipped weights: its conv stem is the trained CNN's first three layers, kept fixed
#: (``stem_from``, ``freeze_stem``), and the patch embedding and transformer learn in 8 epochs,
#: 7.6 minutes, 95.6 %; from scratch it needed about 19 minutes for 91 %.
#: No label smoothing: it would flatten the non-target logits, whose order gives Finer-CAM its
#: references.
DEFAULTS: Dict[str, Dict[str, Any]] = {
    "cnn": {"n_train": 25600, "epochs": 12, "lr": 3e-3, "batch": 64, "weight_decay": 5e-4, "label_smoothing": 0.0,
            "stem_from": None, "freeze_stem": False},
    "vit": {"n_train": 25600, "epochs": 8, "lr": 2e-3, "batch": 64, "weight_decay": 0.05, "label_smoothing": 0.0,
            "stem_from": "cnn", "freeze_stem": True},
}


@torch.no_grad()
def accuracy(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, batch: int = 256) -> float:
    """Top-1 accuracy of ``model`` on uint8 or float images (N, 3, S, S).

    :math:`\\frac{1}{N} \\sum_i [\\arg\\max_k f_k(x_i) = y_i]`, in eval mode; the model's
    train/eval mode is restored afterwards.

    >>> from finercam.world import datasets, models
    >>> b = datasets.generate(16, split="test")
    >>> acc = accuracy(models.load("cnn"), b.images, b.labels)
    >>> 0.5 < acc <= 1.0
    True
    """
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(images), batch):
        x = torch.from_numpy(images[i:i + batch])
        x = x.float() / 255 if x.dtype == torch.uint8 else x
        correct += int((model(x).argmax(1) == torch.from_numpy(labels[i:i + batch])).sum())
    model.train(was_training)
    return correct / max(1, len(images))


def train(model_name: str, n_train: Optional[int] = None, epochs: Optional[int] = None,
          lr: Optional[float] = None, batch: Optional[int] = None, weight_decay: Optional[float] = None,
          seed: int = 0, n_test: int = 1024, threads: int = 2, out: Optional[Path] = None,
          log=None, checkpoint_each_epoch: Optional[Path] = None,
          data_cache: Optional[Path] = None, init: Optional[Path] = None,
          label_smoothing: Optional[float] = None, stem_from: Optional[str] = None,
          freeze_stem: Optional[bool] = None) -> Dict[str, object]:
    """Train ``model_name`` ("cnn" or "vit"); returns the record saved with the weights.

    Minimises the label-smoothed cross-entropy over ``n_train`` generated images (:math:`K = 16`
    classes, smoothing :math:`\\varepsilon` = ``label_smoothing``),

    .. math::

        \\mathcal{L}(x, y) = -\\sum_{k=1}^{K} q_k \\log \\operatorname{softmax}(f(x))_k,
        \\qquad q_k = (1 - \\varepsilon)\\,[k = y] + \\varepsilon / K,

    with AdamW (weight decay on the weight matrices only, not on biases, norms or ``pos_embed``)
    and a one-cycle schedule: the learning rate rises from ``lr / 25`` to ``lr`` over the first
    15% of the ``epochs * (n_train // batch)`` steps (a last partial batch is dropped), then
    follows a cosine down to ``lr / 2.5e5``. ``None`` arguments take the model's
    :data:`DEFAULTS`.

    ``stem_from`` (ViT only; a shipped model's name or a checkpoint path; the ViT's default is
    ``"cnn"``, ``"none"`` trains from scratch) copies a trained CNN's first three conv +
    batch-norm layers into the ViT's conv stem (:func:`transfer_stem`); ``freeze_stem`` (by
    default: whenever the stem was transferred) keeps that stem fixed, without gradients and with
    batch norm on the stored statistics. With ``init`` the checkpoint's own stem is kept unless
    ``stem_from`` is given.

    The weights are written in float16 to ``out`` (default: the package's weights folder) and the test accuracy is measured on ``n_test`` images after the float16
    round trip, i.e. on the model as :func:`finercam.world.models.load` will return it. ``log``
    receives the progress lines (default: print). torch's thread count is set to ``threads``
    for the run and restored afterwards.

    One epoch of one batch, written to a temporary folder:

    >>> import tempfile
    >>> from pathlib import Path
    >>> from finercam.world import models
    >>> out = Path(tempfile.mkdtemp()) / "cnn.pt"
    >>> threads = torch.get_num_threads()
    >>> record = train("cnn", n_train=8, epochs=1, batch=8, n_test=8, out=out, log=lambda msg: None)
    >>> record["model"], record["n_test"], len(record["history"]), record["train_config"]["n_train"]
    ('cnn', 8, 1, 8)
    >>> record["train_config"]["lr"] == DEFAULTS["cnn"]["lr"]      # not given: the default
    True
    >>> 0.0 <= record["test_accuracy"] <= 1.0, torch.get_num_threads() == threads
    (True, True)
    >>> models.load("cnn", out).training     # the written weights load like the shipped ones
    False
    """
    if log is None:
        def log(msg: str) -> None:
            print(msg, flush=True)
    cfg = dict(DEFAULTS[model_name])
    for key, value in (("n_train", n_train), ("epochs", epochs), ("lr", lr), ("batch", batch),
                       ("weight_decay", weight_decay), ("label_smoothing", label_smoothing),
                       ("stem_from", stem_from), ("freeze_stem", freeze_stem)):
        if value is not None:
            cfg[key] = value
    if stem_from is None and init is not None:  # the checkpoint brings its own stem
        cfg["stem_from"] = None
    if isinstance(cfg["stem_from"], str) and cfg["stem_from"].lower() in ("", "none"):
        cfg["stem_from"] = None  # from scratch: ``--stem-from none``
    if freeze_stem is not None and not isinstance(freeze_stem, bool):
        raise TypeError(f"freeze_stem must be True, False or None, got {type(freeze_stem).__name__}")
    if freeze_stem is None:  # by default only a stem transferred from the CNN stays fixed
        cfg["freeze_stem"] = bool(cfg["freeze_stem"]) and cfg["stem_from"] is not None
    if int(cfg["n_train"]) < int(cfg["batch"]):  # OneCycleLR would fail later with zero steps
        raise ValueError(f"n_train must be at least batch ({int(cfg['batch'])}) so that an epoch has a "
                         f"step, got {int(cfg['n_train'])}")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _train(model_name, cfg, seed, n_test, threads, out, log, checkpoint_each_epoch, data_cache, init)
    finally:
        torch.set_num_threads(previous_threads)


def _trained(spec: object, argument: str) -> torch.nn.Module:
    """A trained model in eval mode: a shipped model's name ("cnn") or a checkpoint path."""
    if not isinstance(spec, (str, Path)):
        raise TypeError(f"{argument} must be a model name or a checkpoint path, got {type(spec).__name__}")
    if spec in MODELS:
        return load(str(spec))
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"{argument} must be one of {MODELS} or a checkpoint file, got {str(spec)!r}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, or one holding arbitrary objects
        raise ValueError(f"{argument}: {str(spec)!r} is not a checkpoint written by finercam train ({exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("model") not in MODELS:
        raise ValueError(f"{argument}: {str(spec)!r} is not a checkpoint written by finercam train "
                         f"(no 'model' entry naming one of {MODELS})")
    return load(ckpt["model"], path)


def transfer_stem(cnn: torch.nn.Module, vit: torch.nn.Module) -> int:
    """Copy the trained CNN's first three conv + batch-norm layers into the ViT's conv stem.

    The default architectures share them exactly: ``stem`` (3 -> 24, stride 2), ``block1``
    (24 -> 32, stride 2) and the first conv of ``block2`` (32 -> 48) of
    :class:`~finercam.world.models.cnn.SmallCNN` are the three convs of
    :class:`~finercam.world.models.vit.SmallViT`'s ``stem``.  Returns the number of tensors copied;
    a ``ValueError`` names the first layer whose shape differs.

    >>> from finercam.world import models
    >>> transfer_stem(models.load("cnn"), models.build("vit"))   # 3 conv weights + 3 x 5 batch-norm tensors
    18
    """
    if not isinstance(cnn, SmallCNN):
        raise TypeError(f"cnn (the stem_from model) must be a trained SmallCNN, got {type(cnn).__name__}")
    if not isinstance(vit, SmallViT):
        raise TypeError(f"vit must be a SmallViT, got {type(vit).__name__}")
    sources = [cnn.stem[0], cnn.stem[1], cnn.block1[0], cnn.block1[1], cnn.block2[0], cnn.block2[1]]
    targets = [m for m in vit.stem if isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d))]
    if len(targets) != len(sources):
        raise ValueError(f"stem: the ViT has {len(targets) // 2} stem convs, the CNN transfer needs 3")
    copied = 0
    with torch.no_grad():
        for i, (src, dst) in enumerate(zip(sources, targets, strict=True)):
            for (name, a), (_, b) in zip(src.state_dict().items(), dst.state_dict().items(), strict=True):
                if a.shape != b.shape:
                    raise ValueError(f"stem: layer {i} {name} has shape {tuple(b.shape)} in the ViT, "
                                     f"{tuple(a.shape)} in the CNN")
                b.copy_(a)
                copied += 1
    return copied


def _train_mode(model: torch.nn.Module, frozen_stem: bool) -> None:
    model.train()
    if frozen_stem:
        model.get_submodule("stem").eval()


def _cached(folder: Optional[Path], split: str, n: int, seed: int) -> datasets.Batch:
    """Generate a split as uint8, or load it from ``folder`` where an earlier run saved it."""
    if folder is None:
        return datasets.generate(n, seed=seed, split=split, dtype=np.uint8)
    path = Path(folder) / f"{split}-seed{seed}-n{n}.npz"
    if path.is_file():
        with np.load(path) as f:
            return datasets.Batch(f["images"], f["labels"], f["boxes"], np.zeros((n, 0, 0, 0), bool))
    b = datasets.generate(n, seed=seed, split=split, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=b.images, labels=b.labels, boxes=b.boxes)
    return b


def _train(model_name, cfg, seed, n_test, threads, out, log, checkpoint_each_epoch, data_cache, init):
    # the model we start from is loaded first, so that a bad name fails before the data is made
    stem_source = _trained(cfg["stem_from"], "stem_from") if cfg.get("stem_from") else None
    if stem_source is not None and model_name != "vit":
        raise ValueError(f"stem_from initialises a ViT's conv stem; the {model_name} has none")
    if cfg.get("freeze_stem") and (model_name != "vit" or (stem_source is None and init is None)):
        raise ValueError("freeze_stem keeps a trained ViT stem fixed: it needs the vit and stem_from or init")
    if stem_source is not None and not isinstance(stem_source, SmallCNN):
        raise TypeError(f"stem_from must be a trained SmallCNN, got a {type(stem_source).__name__}")
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    train_set = _cached(data_cache, "train", int(cfg["n_train"]), seed)
    test_set = _cached(data_cache, "test", n_test, seed)
    t_data = time.perf_counter() - t0
    log(f"generated {len(train_set.labels)} train + {n_test} test images in {t_data:.1f} s")

    if init is not None:  # continue from an earlier run's weights (a new learning-rate cycle)
        model = load(model_name, init).float()  # with the architecture that checkpoint was trained with
        log(f"initialised from {init}")
    else:
        model = build(model_name)
    if stem_source is not None:
        copied = transfer_stem(stem_source, model)
        log(f"stem initialised from {cfg['stem_from']} ({copied} tensors)")
    # channels-last convolutions are about 7 % faster on this CPU; the weights are saved contiguous
    model = model.to(memory_format=torch.channels_last).train()  # type: ignore[call-overload]  # torch's stub lacks it
    frozen = bool(cfg.get("freeze_stem"))
    if frozen:  # a fixed feature extractor: no gradients, batch norm on its stored statistics
        model.stem.requires_grad_(False)
    _train_mode(model, frozen)
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in trained if p.ndim > 1 and "pos_embed" not in n]
    no_decay = [p for n, p in trained if p.ndim <= 1 or "pos_embed" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg["lr"])
    bs, n = int(cfg["batch"]), len(train_set.labels)
    steps_per_epoch = n // bs
    total = steps_per_epoch * int(cfg["epochs"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg["lr"], total_steps=total, pct_start=0.15)
    gen = torch.Generator().manual_seed(seed)
    images = torch.from_numpy(train_set.images)
    labels = torch.from_numpy(train_set.labels)
    history = []
    t1, c1 = time.perf_counter(), time.process_time()
    for epoch in range(int(cfg["epochs"])):
        perm = torch.randperm(n, generator=gen)
        running = 0.0
        for s in range(steps_per_epoch):
            idx = perm[s * bs:(s + 1) * bs]
            x = (images[idx].float() / 255).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(x), labels[idx], label_smoothing=float(cfg["label_smoothing"]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running += float(loss.detach())
        acc = accuracy(model, test_set.images[:512], test_set.labels[:512])
        _train_mode(model, frozen)
        history.append({"epoch": epoch + 1, "loss": running / steps_per_epoch, "test_acc_512": acc,
                        "seconds": time.perf_counter() - t1})
        if checkpoint_each_epoch is not None:  # a fallback while a long run goes on
            torch.save({"state_dict": model.state_dict(), "config": model.config, "epoch": epoch + 1,
                        "test_acc_512": acc}, checkpoint_each_epoch)
        log(f"epoch {epoch + 1}/{int(cfg['epochs'])}  loss {running / steps_per_epoch:.3f}  "
            f"test acc (512) {acc:.3f}  {time.perf_counter() - t1:.0f} s")
    t_train, c_train = time.perf_counter() - t1, time.process_time() - c1
    # the shipped weights are float16: measure the model as it will be loaded
    state = {k: v.half().contiguous() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    model.eval()
    test_acc = accuracy(model, test_set.images, test_set.labels)
    log(f"{model_name}: test accuracy {test_acc:.4f} on {n_test} images; training {t_train:.0f} s "
        f"({c_train:.0f} s CPU), data {t_data:.0f} s")
    record = {"model": model_name, "init": None if init is None else str(init),
              "config": model.config, "train_config": cfg, "seed": seed,
              "test_accuracy": test_acc, "n_test": n_test, "train_seconds": t_train, "train_cpu_seconds": c_train,
              "data_seconds": t_data, "threads": threads, "history": history,
              "torch": str(torch.__version__)}
    out = Path(out) if out is not None else WEIGHTS_DIR / f"{model_name}.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, **record}, out)
    log(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return record


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The training options, shared by ``python -m finercam.world.models.train`` and ``finercam train``.

    >>> p = argparse.ArgumentParser(prog="finercam train")
    >>> add_arguments(p)
    >>> args = p.parse_args(["--model", "cnn", "--epochs", "2"])
    >>> args.model, args.epochs, args.lr
    ('cnn', 2, None)
    """
    parser.add_argument("--model", choices=sorted(DEFAULTS), required=True)
    parser.add_argument("--n-train", type=int, default=None, help="training images (default per model)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label-smoothing", type=float, default=None,
                        help="default 0: smoothing flattens the similarity order of the non-target logits")
    parser.add_argument("--n-test", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="default: the package's weights folder")
    parser.add_argument("--checkpoint-each-epoch", type=Path, default=None,
                        help="also write the float32 state after every epoch to this path")
    parser.add_argument("--init", type=Path, default=None,
                        help="start from the weights of this checkpoint (fine-tuning)")
    parser.add_argument("--stem-from", default=None,
                        help="vit only: initialise the conv stem from this trained CNN, a shipped name or a "
                             "checkpoint path (default for vit: cnn; 'none': from scratch)")
    parser.add_argument("--freeze-stem", action=argparse.BooleanOptionalAction, default=None,
                        help="vit only: keep the conv stem fixed (default: when it comes from the CNN)")
    parser.add_argument("--data-cache", type=Path, default=None,
                        help="folder to save the generated images to, or load them from on a rerun")


def check_arguments(args: argparse.Namespace) -> None:
    """A ``ValueError`` naming the first non-positive count among the parsed options.

    >>> p = argparse.ArgumentParser(prog="finercam train")
    >>> add_arguments(p)
    >>> check_arguments(p.parse_args(["--model", "cnn", "--epochs", "0"]))
    Traceback (most recent call last):
    ...
    ValueError: --epochs must be positive, got 0
    """
    for name in ("n_train", "epochs", "batch", "n_test", "threads"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}")


def run(args: argparse.Namespace, parser: Optional[argparse.ArgumentParser] = None) -> int:
    """Train with parsed options; a non-positive count is a usage error (exit status 2).

    Without ``parser`` the usage error is the ``ValueError`` of :func:`check_arguments` (with it,
    ``parser.error`` exits 2); either way it comes before any training:

    >>> p = argparse.ArgumentParser(prog="finercam train")
    >>> add_arguments(p)
    >>> run(p.parse_args(["--model", "cnn", "--epochs", "0"]))
    Traceback (most recent call last):
    ...
    ValueError: --epochs must be positive, got 0
    """
    try:
        check_arguments(args)
    except ValueError as exc:
        if parser is None:
            raise
        parser.error(str(exc))
    train(args.model, args.n_train, args.epochs, args.lr, args.batch, seed=args.seed,
          n_test=args.n_test, threads=args.threads, out=args.out,
          checkpoint_each_epoch=args.checkpoint_each_epoch, data_cache=args.data_cache,
          init=args.init, label_smoothing=args.label_smoothing,
          stem_from=args.stem_from, freeze_stem=args.freeze_stem)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m finercam.world.models.train --model cnn|vit [options]``; returns the exit status.

    A usage error exits with status 2 before any training (argparse prints it on stderr):

    >>> main(["--model", "cnn", "--batch", "0"])
    Traceback (most recent call last):
    ...
    SystemExit: 2
    """
    parser = argparse.ArgumentParser(prog="python -m finercam.world.models.train", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv), parser)


if __name__ == "__main__":
    raise SystemExit(main())
