"""The evaluation runner: numbers, resumption after a real kill, torchrun, unreadable files."""
import json
import math
import os
import re
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import finercam
from finercam import metrics
from finercam.apps import inputs
from finercam.apps.cli import main as cli_main
from finercam.evaluation import ImageFolder, evaluate
from finercam.evaluation.data import default_transform, resolve_data

sys.path.insert(0, str(Path(__file__).parent))
import evalkit  # noqa: E402

FAST = dict(methods=["gradcam"], steps=4, batch_size=4, chunk_size=16, progress=False,
            verbose=False)


CLI = ["evaluate", "--model", "evalkit:model", "--layer", evalkit.LAYER, "--data",
       "evalkit:dataset", "--methods", "gradcam", "--steps", "4", "--batch-size", "4",
       "--chunk-size", "16", "--no-progress"]


def test_rows_are_means_of_per_image_metrics_computed_directly(tmp_path):
    model, ds = evalkit.model(), evalkit.dataset()
    res = evaluate(model, evalkit.LAYER, ds, out_dir=tmp_path, **FAST)
    assert [r["setting"] for r in res.rows] == ["Grad-CAM", "Grad-CAM + Finer"]
    # the oracle: explain and score batch by batch with the public API
    cam = finercam.FinerCAM(model.eval(), evalkit.LAYER, method="gradcam")
    per = {"Grad-CAM": [], "Grad-CAM + Finer": []}
    for b in range(0, len(ds), 4):
        items = [ds[i] for i in range(b, min(len(ds), b + 4))]
        x = torch.stack([it[0] for it in items])
        y = np.array([it[1] for it in items])
        boxes = torch.stack([it[2] for it in items])
        exp = cam(x, targets=y)
        with torch.no_grad():
            d = metrics.nearest_logit_class(model(x), y)
        for name, maps in (("Grad-CAM", exp.baseline().maps), ("Grad-CAM + Finer", exp.maps)):
            per[name].append(np.stack([
                metrics.relative_drop(model, x, maps, y, d, 0.05),
                metrics.relative_drop(model, x, maps, y, d, 0.1),
                metrics.deletion_auc(model, x, maps, y, steps=4).auc,
                metrics.energy_in_mask(maps, boxes)], 1))
    for row in res.rows:
        want = np.concatenate(per[row["setting"]]).mean(0)
        got = [row["rd@0.05"], row["rd@0.1"], row["deletion"], row["energy"]]
        np.testing.assert_allclose(got, want, atol=1e-9)
        assert row["n"] == len(ds)
    lines = (tmp_path / "per_image.jsonl").read_text().splitlines()
    assert len(lines) == 1 + len(ds)
    table = json.loads((tmp_path / "table.json").read_text())
    assert table["rows"] == json.loads(json.dumps(res.rows))
    assert (tmp_path / "table.csv").read_text().startswith("setting,deletion,rd@0.05")
    assert "| Grad-CAM + Finer |" in (tmp_path / "table.md").read_text()


def test_ablation_rows(tmp_path):
    model, ds = evalkit.model(), evalkit.BoxDataset(n=4)
    res = evaluate(model, evalkit.LAYER, ds, num_references=1, gammas=[0.0], reference_ranks=[1, 2],
                   aggregations=["max"], **FAST)
    rows = {r["setting"]: r for r in res.rows}
    assert list(rows) == ["Grad-CAM", "Grad-CAM + Finer", "Grad-CAM + Finer gamma=0",
                          "Grad-CAM + Finer ref=1", "Grad-CAM + Finer ref=2",
                          "Grad-CAM + Finer agg=max"]
    keys = ["deletion", "rd@0.05", "rd@0.1", "energy"]
    # one reference: Finer compares with the most similar class, exactly the ref=1 row
    assert [rows["Grad-CAM + Finer"][k] for k in keys] == [rows["Grad-CAM + Finer ref=1"][k] for k in keys]
    np.testing.assert_allclose([rows["Grad-CAM + Finer gamma=0"][k] for k in keys],
                               [rows["Grad-CAM"][k] for k in keys], atol=1e-6)


def _forkserver():
    """The start method of the child processes below: a fork server that imports torch and
    finercam once, so that each child costs a fork instead of an interpreter start and a torch
    import (seconds each on a busy CI machine). A clean server, not a fork of pytest: no OpenMP
    pool or CUDA context is inherited."""
    import multiprocessing
    import multiprocessing.forkserver

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "finercam.apps.cli"])
    multiprocessing.forkserver.ensure_running()  # returns at once; the server imports meanwhile
    return ctx


FORKSERVER = _forkserver()  # started at collection: its imports overlap the tests before ours


@pytest.mark.subprocess
def test_killed_run_resumes_to_the_uninterrupted_table(tmp_path, capsys):
    full = evaluate(evalkit.model(), evalkit.LAYER, evalkit.dataset(), out_dir=tmp_path / "full",
                    **FAST)
    out = tmp_path / "killed"
    argv = [*CLI, "--out", str(out)]
    # a real process, SIGKILLed after the batch that reaches 6 images (its after_batch callback)
    child = FORKSERVER.Process(target=evalkit.killed_child, args=(str(out), 6))
    child.start()
    child.join(120)
    assert child.exitcode == -signal.SIGKILL
    recorded = (out / "per_image.jsonl").read_text().splitlines()
    assert len(recorded) == 1 + 8 and not (out / "table.json").exists()
    with open(out / "per_image.jsonl", "a") as f:   # a torn line, as a kill mid-write leaves
        f.write('{"index": 8, "label": 3, "met')
    capsys.readouterr()
    assert cli_main(argv) == 0                      # the same command started again
    assert "| Grad-CAM + Finer |" in capsys.readouterr().out
    lines = (out / "per_image.jsonl").read_text().splitlines()
    indices = [json.loads(l)["index"] for l in lines[1:]]
    assert sorted(indices) == list(range(10))          # none lost, none twice
    table = json.loads((out / "table.json").read_text())
    assert table["rows"] == json.loads(json.dumps(full.rows))
    # a finished run started again computes nothing and gives the same table
    again = evaluate(evalkit.model(), evalkit.LAYER, evalkit.dataset(), out_dir=out, **FAST)
    assert json.loads(json.dumps(again.rows)) == table["rows"]
    with pytest.raises(ValueError, match="another configuration"):
        evaluate(evalkit.model(), evalkit.LAYER, evalkit.dataset(), out_dir=out,
                 **{**FAST, "steps": 5})


@pytest.mark.subprocess
def test_torchrun_two_gloo_processes_merge_to_the_single_process_table(tmp_path):
    """``torchrun --standalone --nproc-per-node 2`` itself (its ``main``, in this process), with
    its ``--run-path`` option and workers from the fork server instead of two fresh interpreters.
    ``--device cpu`` keeps gloo on a machine with one GPU, where two nccl ranks cannot share it."""
    from torch.distributed import run as torchrun

    single = evaluate(evalkit.model(), evalkit.LAYER, evalkit.dataset(), **FAST)
    out = tmp_path / "dist"
    # the launcher installs signal handlers and sets variables for its workers: undo both
    signals = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT]
    handlers = {s: signal.getsignal(s) for s in signals}
    environ = dict(os.environ)
    try:
        torchrun.main(["--standalone", "--nproc-per-node", "2", "--start-method", "forkserver",
                       "--run-path", evalkit.__file__, *CLI, "--device", "cpu",
                       "--out", str(out)])
    finally:
        os.environ.clear()
        os.environ.update(environ)
        for s, h in handlers.items():
            signal.signal(s, h)
    assert (out / "per_image.rank1.jsonl").exists()
    shard0 = [json.loads(l)["index"] for l in (out / "per_image.jsonl").read_text().splitlines()[1:]]
    shard1 = [json.loads(l)["index"] for l in (out / "per_image.rank1.jsonl").read_text().splitlines()[1:]]
    assert sorted(shard0 + shard1) == list(range(10)) and not set(shard0) & set(shard1)
    table = json.loads((out / "table.json").read_text())
    assert table["rows"] == json.loads(json.dumps(single.rows))


def _folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "folder"
    for c in ("alpha", "beta"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            arr = rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / c / f"{i}.png")
    (root / "alpha" / "broken.jpg").write_bytes(b"not an image at all")
    good = (root / "beta" / "0.png").read_bytes()
    (root / "beta" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "boxes.csv").write_text("alpha/0.png,0,0,12,10\nbeta/1.png,6,5,24,20\n")
    return root


def test_image_folder_reports_unreadable_files_and_scales_boxes(tmp_path, capsys):
    root = _folder(tmp_path)
    ds = ImageFolder(root, transform=default_transform(16))
    assert ds.classes == ["alpha", "beta"] and len(ds) == 8
    x, label, box = ds[0]
    assert x.shape == (3, 16, 16) and label == 0
    assert box.tolist() == [0.0, 0.0, 8.0, 8.0]   # 24x20 -> 16x16
    from PIL import Image

    raw = ImageFolder(root, transform=default_transform(16, (0.0,) * 3, (1.0,) * 3))[0][0]
    want = np.asarray(Image.open(root / "alpha" / "0.png").convert("RGB")
                      .resize((16, 16), Image.BILINEAR), np.float32) / 255
    np.testing.assert_allclose(raw.permute(1, 2, 0).numpy(), want, atol=1e-7)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(x, (raw - mean[:, None, None]) / std[:, None, None])
    res = evaluate(evalkit.model(), evalkit.LAYER, str(root), transform=default_transform(16),
                   **{**FAST, "verbose": True})
    printed = capsys.readouterr().out
    assert res.n_images == 6 and len(res.skipped) == 2
    assert "2 unreadable image(s)" in printed and "broken.jpg" in printed and "truncated.png" in printed
    # Loc. averages only the two images that have a box
    per = res.rows[0]
    assert per["n"] == 6 and not math.isnan(per["energy"])


def test_cli_errors_are_messages_and_the_model_is_restored(tmp_path, capsys):
    assert cli_main([*CLI[:-1], "--steps", "0"]) == 2
    assert "steps" in capsys.readouterr().err
    model = evalkit.model().train()
    evaluate(model, evalkit.LAYER, evalkit.BoxDataset(n=2), **FAST)
    assert model.training and all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


def test_predicted_targets_and_nearest_logit_compare_to(tmp_path):
    model, ds = evalkit.model(), evalkit.BoxDataset(n=4)
    evaluate(model, evalkit.LAYER, ds, target="predicted", out_dir=tmp_path, **FAST)
    recs = [json.loads(l) for l in (tmp_path / "per_image.jsonl").read_text().splitlines()[1:]]
    with torch.no_grad():
        logits = model(torch.stack([ds[i][0] for i in range(4)]))
    assert [r["target"] for r in recs] == logits.argmax(1).tolist()
    assert [r["compare_to"] for r in recs] == metrics.nearest_logit_class(logits, logits.argmax(1)).tolist()
    assert [r["label"] for r in recs] == [0, 1, 2, 3]


class _DictInfo(torch.utils.data.Dataset):
    """Items shaped like finercam.world.datasets.SpotTheDifference: (image, label, {"box": ...})."""

    def __init__(self):
        self.base = evalkit.BoxDataset(n=4)

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        x, y, box = self.base[i]
        return x, y, {"box": box, "parts": torch.zeros(2, 16, 16, dtype=torch.bool)}


def test_dict_info_items_and_dataset_classes_by_import_string():
    assert isinstance(resolve_data("evalkit:BoxDataset"), evalkit.BoxDataset)
    plain = evaluate(evalkit.model(), evalkit.LAYER, evalkit.BoxDataset(n=4), **FAST)
    info = evaluate(evalkit.model(), evalkit.LAYER, _DictInfo(), **FAST)
    assert info.rows == plain.rows and "energy" in info.rows[0]


@pytest.mark.parametrize("kwargs,error,name", [
    ({"limit": 0}, ValueError, "limit"), ({"limit": 2.5}, TypeError, "limit"),
    ({"gamma": float("nan")}, ValueError, "gamma"), ({"gamma": "0.6"}, TypeError, "gamma"),
    ({"gammas": [-1.0]}, ValueError, "gamma"), ({"num_references": 0}, ValueError, "num_references"),
    ({"reference_ranks": [1.0]}, TypeError, "reference_ranks"),
    ({"reference_ranks": [0]}, ValueError, "reference_ranks"),
    ({"batch_size": True}, TypeError, "batch_size"), ({"steps": 0}, ValueError, "steps"),
    ({"aggregations": ["median"]}, ValueError, "aggregate"),
    ({"baseline": "zero"}, ValueError, "baseline"), ({"baseline": True}, TypeError, "baseline"),
    ({"baseline": float("inf")}, ValueError, "baseline")])
def test_bad_arguments_name_themselves(kwargs, error, name, tmp_path):
    """Refused before the run starts: nothing is written to out_dir."""
    model = evalkit.model().train()
    with pytest.raises(error, match=name):
        evaluate(model, evalkit.LAYER, evalkit.BoxDataset(n=2), out_dir=tmp_path / "out",
                 **{**FAST, **kwargs})
    assert model.training and not (tmp_path / "out").exists()


def test_a_model_spread_over_devices_is_not_moved():
    model = evalkit.model().train()
    model[0].register_buffer("stray", torch.zeros(1, device="meta"))
    with pytest.raises(ValueError, match="device"):
        evaluate(model, evalkit.LAYER, evalkit.BoxDataset(n=2), device="cpu", **FAST)
    assert model.training and model[2].weight.device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_option_leaves_the_model_where_it_was():
    model = evalkit.model()
    on_cpu = evaluate(model, evalkit.LAYER, evalkit.BoxDataset(n=4), **FAST)
    on_gpu = evaluate(model, evalkit.LAYER, evalkit.BoxDataset(n=4), device="cuda", **FAST)
    assert all(t.device.type == "cpu" for t in [*model.parameters(), *model.buffers()])
    for a, b in zip(on_cpu.rows, on_gpu.rows, strict=True):
        np.testing.assert_allclose([a[k] for k in ("deletion", "rd@0.05", "rd@0.1")],
                                   [b[k] for k in ("deletion", "rd@0.05", "rd@0.1")], atol=1e-4)


@pytest.fixture
def kernel_without_ipywidgets(monkeypatch):
    """The notebook condition of the TqdmWarning: an IPython kernel is running and ipywidgets
    cannot be imported; tqdm's notebook modules are imported afresh within it."""
    import types

    class ZMQInteractiveShell:  # what get_ipython() returns in a Jupyter kernel
        config = {"IPKernelApp": {}}

    ipython = types.ModuleType("IPython")
    ipython.get_ipython = ZMQInteractiveShell
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "ipykernel.zmqshell", types.ModuleType("ipykernel.zmqshell"))
    for var in [v for v in os.environ if v == "QT_API" or v.startswith("SPYDER")]:
        monkeypatch.delenv(var)
    monkeypatch.setitem(sys.modules, "ipywidgets", None)   # `import ipywidgets` fails
    for name in ("tqdm.auto", "tqdm.autonotebook", "tqdm.notebook"):
        monkeypatch.delitem(sys.modules, name, raising=False)


def test_progress_bars_emit_no_tqdm_warning_in_a_kernel_without_ipywidgets(kernel_without_ipywidgets):
    import warnings

    from tqdm import TqdmWarning

    from finercam.progress import progress_bar

    # the oracle: the condition is real, tqdm.auto warns in it
    with pytest.warns(TqdmWarning, match="IProgress"):
        import tqdm.auto  # noqa: F401
    for name in ("tqdm.auto", "tqdm.autonotebook", "tqdm.notebook"):
        sys.modules.pop(name, None)
    for progress in (False, True):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = evaluate(evalkit.model(), evalkit.LAYER, evalkit.BoxDataset(n=2),
                           **{**FAST, "progress": progress})
        assert [str(w.message) for w in caught] == []
        assert res.n_images == 2
        # no bar: tqdm's notebook modules are not even imported; a bar: the text one
        assert not {"tqdm.auto", "tqdm.autonotebook", "tqdm.notebook"} & set(sys.modules)
    bar = progress_bar(total=1, disable=True)
    assert type(bar).__module__ == "tqdm.std"
    bar.close()
    hidden = progress_bar(show=False, total=1)
    hidden.update(1), hidden.close()


# --- classes, inputs, costs (issue 17) -------------------------------------------------------------


def _colour_folder(tmp_path, colours=("red", "green")):
    from PIL import Image

    root = tmp_path / "colours"
    rgb = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
    for name in colours:
        (root / name).mkdir(parents=True)
        for i in range(2):
            colour = rgb[name.lower().split("_")[-1]]
            Image.new("RGB", (12 + i, 10), colour).save(root / name / f"{i}.png")
    return root


def test_folder_labels_far_from_the_model_stop_the_run_before_anything_is_written(tmp_path):
    root, out = _colour_folder(tmp_path), tmp_path / "out"
    model = evalkit.colour_model()
    # the oracle: the model gives each colour its COLOUR_IDS class; sorted folders give 0 and 1
    with torch.no_grad():
        red = model(torch.tensor([1.0, 0.0, 0.0])[None, :, None, None].expand(1, 3, 4, 4))
    assert red.argmax().item() == evalkit.COLOUR_IDS["red"]
    assert not {0, 1} & set(red.topk(5).indices[0].tolist())
    with pytest.raises(ValueError) as err:
        evaluate(model, "0", str(root), out_dir=out, **FAST)
    message = str(err.value)
    assert "0 of the first 4 images" in message and "sorted folder names" in message
    assert "--labels" in message and "--target predicted" in message
    assert not out.exists()
    # a labels file maps the folders to the model's classes: the run goes on
    names = tmp_path / "names.txt"
    names.write_text("\n".join(evalkit.colour_names()) + "\n")
    res = evaluate(model, "0", str(root), out_dir=out, labels=inputs.read_labels(names), **FAST)
    recs = [json.loads(l) for l in (out / "per_image.jsonl").read_text().splitlines()[1:]]
    assert [r["label"] for r in recs] == [12, 12, 37, 37]   # green, green, red, red
    assert [r["target"] for r in recs] == [12, 12, 37, 37] and res.n_images == 4
    # --target predicted needs no mapping either
    assert evaluate(model, "0", str(root), target="predicted", **FAST).n_images == 4


def test_labels_must_name_every_folder_and_match_the_class_count(tmp_path, capsys):
    root = _colour_folder(tmp_path, ("red", "Dark_Green"))
    names = evalkit.colour_names()
    names[12] = "dark green"                  # matched ignoring case and "_" vs " "
    res = evaluate(evalkit.colour_model(), "0", str(root), labels=names, target="predicted",
                   **FAST)
    assert res.n_images == 4
    with pytest.raises(ValueError, match="not among the 40 class names: 'Dark_Green'"):
        evaluate(evalkit.colour_model(), "0", str(root), labels=evalkit.colour_names(), **FAST)
    with pytest.raises(ValueError, match="labels holds 3 names but the model has 40 classes"):
        # every folder is named, but the model answers with 40 logits (checked at the first batch)
        evaluate(evalkit.colour_model(), "0", str(root), labels=["red", "dark green", "c"], **FAST)
    bad = tmp_path / "short.txt"
    bad.write_text("a\nb\n")
    argv = ["evaluate", "--model", "evalkit:colour_model", "--layer", "0", "--data", str(root),
            "--labels", str(bad), "--out", str(tmp_path / "cli"), "--no-progress"]
    assert cli_main(argv) == 2
    assert "2 names but the model has 40 classes" in capsys.readouterr().err
    assert not (tmp_path / "cli").exists()


class _Softmaxed(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = evalkit.model()

    def forward(self, x):
        return self.net(x).softmax(1)


def test_probability_outputs_warn(tmp_path):
    with pytest.warns(UserWarning, match="probabilities"):
        evaluate(_Softmaxed(), "net.2", evalkit.BoxDataset(n=4), **FAST)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")        # logits: no warning
        evaluate(evalkit.model(), evalkit.LAYER, evalkit.BoxDataset(n=4), **FAST)


class _OneOutput(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = evalkit.model()
        self.head = torch.nn.Linear(evalkit.CLASSES, 1)

    def forward(self, x):
        return self.head(self.net(x))


@pytest.mark.parametrize("model,layer,match", [
    (evalkit.model, "6", "target_layer '6' gives outputs of shape \\(4, 5\\)"),   # the Linear
    (_OneOutput, "net.2", "at least 2"),
    (evalkit.model, "9", "9")])
def test_no_output_folder_before_the_first_logits(tmp_path, model, layer, match):
    """README: errors stop a run before anything is written (a layer without a feature map,
    a one-output model, a layer that does not exist)."""
    out = tmp_path / "deep" / "out"
    with pytest.raises(ValueError, match=match):
        evaluate(model(), layer, evalkit.BoxDataset(n=4), out_dir=out, **FAST)
    assert not (tmp_path / "deep").exists()


def test_transforms_preprocess_a_folder(tmp_path):
    from PIL import Image

    root = _folder(tmp_path)
    paths = [p for p, _ in ImageFolder(root).samples]
    # the oracle: the same images preprocessed by hand, given as a Dataset
    def by_hand(mean, std):
        out = []
        for p in paths:
            try:
                with Image.open(p) as im:
                    a = np.asarray(im.convert("RGB").resize((16, 16), Image.BILINEAR), np.float32)
            except OSError:
                continue
            out.append(torch.from_numpy((a / 255 - mean) / std).permute(2, 0, 1))
        return out

    def given(images):  # a list of (image, label) is a data set too
        return [(x, i % 2) for i, x in enumerate(images)]

    kw = {**FAST, "target": "predicted"}
    want = evaluate(evalkit.model(), evalkit.LAYER, given(by_hand(0.5, 0.25)), **kw)
    got = evaluate(evalkit.model(), evalkit.LAYER, str(root),
                   transform=default_transform(16, [0.5] * 3, [0.25] * 3), **kw)
    assert got.n_images == want.n_images == 6
    for a, b in zip(got.rows, want.rows, strict=True):
        np.testing.assert_allclose([a[k] for k in ("deletion", "rd@0.05", "rd@0.1")],
                                   [b[k] for k in ("deletion", "rd@0.05", "rd@0.1")], atol=1e-6)
    halves = evaluate(evalkit.model(), evalkit.LAYER, str(root), transform=evalkit.halves, **kw)
    want = evaluate(evalkit.model(), evalkit.LAYER, given(by_hand(0.5, 0.5)), **kw)
    np.testing.assert_allclose(halves.rows[0]["rd@0.05"], want.rows[0]["rd@0.05"], atol=1e-6)
    with pytest.raises(ValueError, match="--transform does its own"):
        inputs.with_preprocessing(inputs.load_model(evalkit.model()), size=16,
                                  transform="evalkit:halves")
    with pytest.raises(ValueError, match="dataset: the preprocessing options apply to a folder"):
        evaluate(evalkit.model(), evalkit.LAYER, evalkit.BoxDataset(n=2),
                 transform=default_transform(16), **kw)


def test_built_in_models_read_folders_with_their_own_preprocessing(tmp_path):
    from PIL import Image

    root = _folder(tmp_path)
    for name, size in (("cnn", 96), ("vit", 96)):
        found = inputs.load_model(name)
        x = resolve_data(str(root), transform=found.transform, crop=found.crop)[0][0]
        want = np.asarray(Image.open(root / "alpha" / "0.png").convert("RGB")
                          .resize((size, size), Image.BILINEAR), np.float32) / 255
        np.testing.assert_allclose(x.permute(1, 2, 0).numpy(), want, atol=1e-6)  # [0, 1] pixels


def test_progress_counts_images_with_an_eta_and_the_plan_comes_first(capsys):
    evaluate(evalkit.model(), evalkit.LAYER, evalkit.dataset(),
             **{**FAST, "progress": True, "verbose": True, "methods": None})
    err = capsys.readouterr().err
    bar = err.split("\r")[-1]
    assert "10/10" in bar and "img" in bar and "3/3" not in err
    assert re.search(r"\d+/10 \[[0-9:]+<[0-9:?]+", err)          # elapsed<remaining
    plan = err[: err.index("evaluate:  ")] if "evaluate:  " in err else err
    assert "evaluate: 10 images, 6 rows (Grad-CAM, Layer-CAM, Score-CAM), 16 images per forward" in plan
    # 16 x 16 images, 4 steps: masked counts 13, 26 (RD), 64, 128, 192, 256 (deletion)
    assert "per image: 3 maps (a forward and a backward each), " \
           "42 forwards for RD and deletion (6 rows x 7), 8 forwards for Score-CAM (8 channels)" in plan
    assert re.search(r"one forward: [0-9.]+ ms per image -> about [0-9.e-]+ s per image, "
                     r"\d+ s for 10 images", plan)


def test_chunk_size_reaches_every_masked_forward(monkeypatch):
    seen = []
    real = metrics.evaluate_maps

    def spy(*args, **kwargs):
        seen.append(kwargs["batch_size"])
        return real(*args, **kwargs)

    monkeypatch.setattr(metrics, "evaluate_maps", spy)
    evaluate(evalkit.model(), evalkit.LAYER, evalkit.BoxDataset(n=4), **{**FAST, "chunk_size": 3})
    assert seen == [3, 3]
    from finercam.evaluation.plan import RunCost, choose_chunk_size

    example = torch.zeros(3, 16, 16)
    short = RunCost(images=10, maps=1, forwards={"RD": 40}, seconds_per_forward=1e-3)
    long = RunCost(images=10_000, maps=1, forwards={"RD": 40}, seconds_per_forward=1e-3)
    # a short run is not worth a calibration: the rule, powers of two up to 8 MiB of input, <= 64
    assert choose_chunk_size(evalkit.model().eval(), example, None, short) == 64
    assert choose_chunk_size(evalkit.model().eval(), example, None, long) in (4, 8, 16, 32, 64, 128, 256)
    assert choose_chunk_size(evalkit.model().eval(), example, 5, long) == 5
    with pytest.raises(ValueError, match="chunk_size"):
        evaluate(evalkit.model(), evalkit.LAYER, evalkit.BoxDataset(n=4), **{**FAST, "chunk_size": 0})


@pytest.mark.subprocess
def test_keep_freed_memory_stops_the_page_faults_of_large_blocks():
    """The oracle: the kernel's own count of minor page faults, in a fresh process, for a
    64 MiB tensor allocated, written and freed twice, before and after the call (the first
    time after it grows the heap, the next reuses it)."""
    import subprocess

    code = (
        "import resource, torch\n"
        "from finercam.evaluation.plan import keep_freed_memory\n"
        "def faults():\n"
        "    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "    for _ in range(2):\n"
        "        a = torch.empty(2**24).fill_(1.0); del a\n"
        "    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before\n"
        "plain = faults()\n"
        "print(keep_freed_memory(), plain, faults(), faults())\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent)))
    applied, plain, first, again = r.stdout.split()
    assert applied == "True", r.stderr                  # glibc, as on the CI machine
    assert int(plain) >= 2 * 16384 * 0.9                # 2 x 64 MiB of fresh 4 KiB pages
    assert int(again) < 0.05 * int(plain)               # once kept, the block is reused


def test_input_options_through_the_command(tmp_path, capsys):
    root = _folder(tmp_path)
    argv = ["evaluate", "--model", "evalkit:model", "--layer", evalkit.LAYER, "--data", str(root),
            "--methods", "gradcam", "--steps", "4", "--batch-size", "4", "--chunk-size", "16",
            "--target", "predicted", "--no-progress"]
    kw = {**FAST, "target": "predicted"}
    for options, given in ((["--size", "16", "--mean", "0.5", "--std", "0.25,0.25,0.25"],
                            {"transform": default_transform(16, [0.5] * 3, [0.25] * 3)}),
                           (["--transform", "evalkit:halves"], {"transform": evalkit.halves})):
        out = tmp_path / options[0].strip("-")
        assert cli_main([*argv, *options, "--out", str(out)]) == 0
        want = evaluate(evalkit.model(), evalkit.LAYER, str(root), **kw, **given)
        got = json.loads((out / "table.json").read_text())["rows"]
        assert got == json.loads(json.dumps(want.rows))
    capsys.readouterr()
    assert cli_main([*argv, "--size", "16", "--transform", "evalkit:halves"]) == 2
    assert "--transform does its own" in capsys.readouterr().err
