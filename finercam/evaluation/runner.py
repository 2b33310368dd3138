"""The runner: :func:`evaluate`, the paper's Table 1 (and its ablations) on a model and data set.

The run: check every argument; forward the first batch (:mod:`.model`); plan the methods and the
chunk size (:mod:`.plan`); read the journal (:mod:`.journal`) and split the batches not yet
recorded between the ranks (:mod:`.distributed`); score each batch (:mod:`.scoring`), recording
it as it is done; merge every rank's records and write the table (:mod:`.tables`).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .._checks import check_int
from ..methods import METHOD_LABELS
from ..progress import progress_bar
from .config import RunConfig
from .data import Unreadable, resolve_data, split_item
from .distributed import Group, joined_group, placed
from .journal import Journal
from .model import FirstLook, first_look
from .plan import SCORECAM_COST_FACTOR, RunCost, choose_chunk_size, default_methods, run_cost
from .scoring import Setting, score_batch
from .tables import EvalResult, columns, mean_rows, write_table

__all__ = ["evaluate"]


@dataclass
class _Job:
    """Everything one batch needs: the placed model, one FinerCAM per method, the rows."""

    net: torch.nn.Module
    device: torch.device
    cams: dict
    rows: list[Setting]
    cfg: RunConfig
    data: Any
    chunk: int                 # images per forward of masked inputs
    cost: RunCost | None       # announced before the first batch (None: silent)


def evaluate(model, target_layer=None, dataset=None, *,
             methods: Sequence[str] | None = None, finer: bool = True,
             gamma: float = 0.6, num_references: int = 3, reference_rule: str = "nearest_logit",
             aggregate: str = "mean", gammas: Sequence[float] = (),
             reference_ranks: Sequence[int] = (), aggregations: Sequence[str] = (),
             fractions: Sequence[float] = (0.05, 0.1), steps: int = 20, baseline=0.0,
             target: str = "label", batch_size: int = 16, out_dir=None,
             labels: Sequence[str] | None = None, transform: Callable | None = None, crop=None,
             chunk_size: int | None = None, limit: int | None = None, device=None,
             progress: bool = True, verbose: bool = True,
             after_batch: Callable[[int], None] | None = None,
             road_fractions: Sequence[float] = (), insertion_steps: int = 0) -> EvalResult:
    """Evaluate CAM methods with and without Finer on a data set; see :mod:`finercam.evaluation`.

    model: an ``nn.Module`` returning logits; target_layer: a module or dotted name, or
    ``"auto"`` (the first of :func:`finercam.suggest_layers` at the first image's size; default:
    ``model.default_target_layer``); dataset: a torch ``Dataset``, a folder, a registered data
    set ``name:ROOT[:split]`` or an import string (:func:`~finercam.evaluation.data.resolve_data`).
    ``labels``: the model's class names in output order, matched to a folder's class names;
    ``transform`` (PIL RGB -> tensor) and ``crop`` read a folder's images. ``gammas``,
    ``reference_ranks`` (1 = the most similar class) and ``aggregations`` add the ablation rows.
    ``road_fractions`` adds the ROAD columns (MoRF, LeRF, combined; e.g.
    ``metrics.ROAD_FRACTIONS``), ``insertion_steps`` the insertion AUC.
    ``out_dir`` makes the run resumable and receives the outputs; nothing is written before
    every argument is checked and the model has answered the first batch. ``after_batch(n)`` is
    called after each batch is recorded with the images this process has recorded so far. The
    model is put in eval mode for the run and restored.

    Eight images of the bird world with the embedded CNN, Grad-CAM only, a 4-step deletion curve:

    >>> import tempfile
    >>> from finercam.world import datasets, models
    >>> out = tempfile.mkdtemp()
    >>> res = evaluate(models.load("cnn"), None, datasets.SpotTheDifference(split="test", n=8),
    ...                methods=("gradcam",), steps=4, batch_size=8, out_dir=out, progress=False,
    ...                verbose=False)
    >>> [r["setting"] for r in res.rows], res.n_images, sorted(os.listdir(out))
    (['Grad-CAM', 'Grad-CAM + Finer'], 8, ['per_image.jsonl', 'table.csv', 'table.json', 'table.md'])
    >>> print(res.markdown().splitlines()[0])
    | Method | Del. ↓ | RD@0.05 ↑ | RD@0.1 ↑ | Drop@0.05 ↑ | Drop@0.1 ↑ | Loc. ↑ | Point. ↑ |
    >>> all(-1 <= r["rd@0.05"] <= 1 and 0 <= r["deletion"] <= 1 and 0 <= r["pointing"] <= 1
    ...     for r in res.rows)
    True
    """
    net, layer = _checked_model(model, target_layer)
    names = None if labels is None else _class_names(labels)
    data = resolve_data(dataset, transform=transform, crop=crop, class_names=names)
    cfg = RunConfig(methods, finer, gamma, num_references, reference_rule, aggregate,
                    list(gammas), list(reference_ranks), list(aggregations), list(fractions),
                    steps, baseline, target, batch_size, _image_count(data, limit),
                    road_fractions=list(road_fractions), insertion_steps=insertion_steps)
    given_chunk = None if chunk_size is None else check_int(chunk_size, "chunk_size")
    if isinstance(layer, str) and layer == "auto":
        layer = _suggested_layer(net, data, cfg)
    with joined_group(device) as group, placed(net, device, group) as model_device:
        look = first_look(net, model_device, layer, data, cfg, names)
        cfg = cfg if cfg.methods else replace(
            cfg, methods=default_methods(cfg, look.channels, look.pixels))
        cost = run_cost(cfg, look.channels, look.pixels, look.seconds_per_image)
        chunk = choose_chunk_size(net, look.example, given_chunk, cost)
        if verbose and group.rank == 0:
            _announce(cfg, look, chunk, methods is not None)
        job = _Job(net, model_device, _cams(net, layer, cfg, look, chunk), cfg.settings(),
                   cfg, data, chunk, cost if verbose else None)
        result = _run(job, out_dir, group, progress and group.rank == 0, after_batch)
    if verbose and group.rank == 0:
        _print_result(result)
    return result


def _suggested_layer(net, data, cfg: RunConfig) -> str:
    """The first suggested target layer at the size of the data set's first image."""
    from ..suggest import suggest_layers
    from .model import first_batch

    images, _ = first_batch(data, cfg.n_images, 1)
    return suggest_layers(net, tuple(images.shape[-2:]))[0].name


def _checked_model(model, target_layer):
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__} (the "
                        "command line's model names are read by finercam evaluate --model)")
    layer = target_layer if target_layer is not None else getattr(model, "default_target_layer", None)
    if layer is None:
        raise ValueError("target_layer is required (the model has no default_target_layer)")
    return model, layer


def _class_names(labels) -> tuple[str, ...]:
    if isinstance(labels, (str, bytes, os.PathLike)) or not isinstance(labels, Sequence):
        raise TypeError("labels must be a list of class names in the model's output order, got "
                        f"{type(labels).__name__}")
    return tuple(str(n) for n in labels)


def _image_count(data, limit) -> int:
    n = len(data)
    return n if limit is None else min(n, check_int(limit, "limit"))


def _announce(cfg: RunConfig, look: FirstLook, chunk: int, methods_given: bool) -> None:
    names = ", ".join(METHOD_LABELS.get(m, m) for m in cfg.methods)
    print(f"evaluate: {cfg.n_images} images, {len(cfg.settings())} rows ({names}), "
          f"{chunk} images per forward", file=sys.stderr)
    if not methods_given and "scorecam" not in cfg.methods:
        print(f"Score-CAM left out of the default methods: {look.channels} forwards per image "
              "(one per channel) is more than "
              f"{SCORECAM_COST_FACTOR}x what the metrics cost; add it with --methods",
              file=sys.stderr)


def _cams(net, layer, cfg: RunConfig, look: FirstLook, chunk: int) -> dict:
    from ..finer import FinerCAM

    # per class where a row needs it: the ranked references, or each reference for the aggregations
    candidates = max(cfg.reference_ranks) if cfg.reference_ranks else (1 if cfg.aggregations else None)
    # Score-CAM's chunk is a budget in MiB of masked inputs: `chunk` images of this size
    budget = chunk * look.example.numel() * max(look.example.element_size(), 4) / 2**20
    return {m: FinerCAM(net, layer, method=m, gamma=cfg.gamma, num_references=cfg.num_references,
                        reference_rule=cfg.reference_rule, aggregate=cfg.aggregate,
                        candidates=candidates, score_budget_mb=budget)
            for m in cfg.methods}


def _print_result(result: EvalResult) -> None:
    print(result.markdown())
    if result.skipped:
        print(f"{len(result.skipped)} unreadable image(s):")
        for s in result.skipped:
            print(f"  [{s['index']}] {s['path']}: {s['skipped']}")


def _run(job: _Job, out_dir, group: Group, show: bool, after_batch) -> EvalResult:
    """Resume from ``out_dir``, evaluate this rank's share of the missing batches, merge."""
    cfg = job.cfg
    journal = None if out_dir is None else Journal(Path(out_dir), group.rank, cfg.record())
    previous = journal.read() if journal is not None else []
    group.barrier()  # everyone has read the same state before anyone writes
    # ranks on machines without a shared out_dir see different files: agree on the union
    done = set(group.union(sorted({r["index"] for r in previous})))
    todo = [b for b in range(cfg.n_batches()) if not set(cfg.batch_indices(b)) <= done]
    mine = todo[group.rank::group.world]
    if job.cost is not None and group.rank == 0:
        images = sum(len(cfg.batch_indices(b)) for b in mine)
        print(replace(job.cost, images=images).describe(), file=sys.stderr)
    fresh = _evaluate_batches(job, mine, journal, show, after_batch)
    merged = _merge(journal, fresh, group)
    skipped = [r for r in merged if "skipped" in r]
    evaluated = [r for r in merged if "metrics" in r]
    keys = [c.key for c in columns(cfg.fractions)]
    result = EvalResult(mean_rows(evaluated, [s.name for s in job.rows], keys), len(evaluated),
                        skipped, cfg.record(), None if out_dir is None else str(out_dir))
    if out_dir is not None and group.rank == 0:
        write_table(result, Path(out_dir))
    return result


def _batch_records(job: _Job, indices: range) -> list[dict]:
    """The records of one batch of the grid, unreadable items included, in index order."""
    items, kept, recs = [], [], []
    for i in indices:
        split = split_item(job.data[i], i)
        if isinstance(split, Unreadable):
            recs.append({"index": i, "skipped": split.reason, "path": split.path})
        else:
            items.append(split)
            kept.append(i)
    if items:
        recs += score_batch(job.net, job.cams, items, kept, job.rows, job.cfg, job.chunk,
                            job.device)
    return sorted(recs, key=lambda r: r["index"])


def _evaluate_batches(job: _Job, batches: list[int], journal, show: bool, after_batch) -> list:
    """Evaluate ``batches`` in order, recording each as soon as it is done."""
    total = sum(len(job.cfg.batch_indices(b)) for b in batches)
    fresh: list[dict] = []
    with progress_bar(show=show, total=total, unit="img", desc="evaluate") as bar:
        for b in batches:
            recs = _batch_records(job, job.cfg.batch_indices(b))
            fresh += recs
            if journal is not None:
                journal.append(recs)
            bar.update(len(recs))
            if after_batch is not None:
                after_batch(len(fresh))
    return fresh


def _merge(journal, fresh: list[dict], group: Group) -> list[dict]:
    """Every record of the run, one per index, in index order."""
    if journal is not None:
        mine = journal.own_records()  # this rank's records of every attempt
        local = journal.all_records()
    else:
        mine, local = fresh, []
    if group.dist is not None:
        # merged from what every rank sends, so that out_dir need not be shared between machines
        records = local + [r for part in group.gather(mine) for r in part]
    else:
        records = local or mine
    by_index = {r["index"]: r for r in records}  # a batch computed twice gives equal records
    return [by_index[i] for i in sorted(by_index)]
