"""``finercam probe`` and the data-set columns of ``evaluate`` on bird-world trees in the official
formats: the probe round trip (train, save, load through ``probe:FILE``, same logits), its
resumable feature cache, and an evaluate run's Loc. and part columns recomputed by hand."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from finercam import FinerCAM
from finercam.apps import cli, inputs
from finercam.evaluation import datasets as D
from finercam.evaluation import evaluate
from finercam.evaluation.parts import PART_RADIUS
from finercam.probe import ProbeModel, extract_features, fit_linear_head
from finercam.world import models
from finercam.world.datasets import official as W


@pytest.fixture(scope="module")
def cub(tmp_path_factory):
    root = tmp_path_factory.mktemp("cub")
    return root, W.write_cub(root, n_train=32, n_test=8, size=96)


@pytest.fixture(scope="module")
def trained(cub, tmp_path_factory):
    root, _ = cub
    out = tmp_path_factory.mktemp("probe")
    code = cli.main(["probe", "--data", f"cub:{root}", "--backbone", "cnn", "--epochs", "5", "--lr", "3e-3",
                     "--cache", str(out / "cache"), "--out", str(out / "p.pt"), "--no-progress"])
    assert code == 0
    return out


def test_probe_round_trip_same_logits(cub, trained):
    root, truth = cub
    found = inputs.load_model(f"probe:{trained / 'p.pt'}")
    model = found.model
    assert isinstance(model, ProbeModel) and found.layer == "backbone.block3"
    assert found.class_names == D.CUB(root).class_names
    # the same module by hand: the shipped CNN, its block3 averaged, the saved head
    ckpt = torch.load(trained / "p.pt", weights_only=True)
    cnn = models.load("cnn")
    ds = D.CUB(root, "test", view=D.View(found.transform, found.crop))
    x = torch.stack([ds[i][0] for i in range(4)])
    taken = {}
    h = cnn.block3.register_forward_hook(lambda m, a, o: taken.setdefault("f", o))
    with torch.no_grad():
        cnn(x)
        h.remove()
        want = taken["f"].mean(dim=(2, 3)) @ ckpt["head"]["weight"].T + ckpt["head"]["bias"]
        got = model(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    record = json.loads((trained / "p.pt.json").read_text())
    preds = got.argmax(1).numpy()
    assert 0.0 <= record["accuracy"] <= 1.0 and record["eval_images"] == 8 and record["train_images"] == 32
    with torch.no_grad():
        all_preds = model(torch.stack([ds[i][0] for i in range(len(ds))])).argmax(1).numpy()
    assert record["accuracy"] == pytest.approx(float(np.mean(all_preds == ds.labels())))
    assert preds.shape == (4,)
    # explainable through its target layer; the model leaves as it came
    exp = FinerCAM(model, found.layer)(x[:2], targets=[0, 1])
    assert exp.maps.shape == (2, 96, 96) and np.isfinite(exp.maps).all()
    assert not any(m._forward_hooks for m in model.modules())


def test_feature_cache_resumes_and_matches(cub, tmp_path):
    root, _ = cub
    cnn = models.load("cnn")
    model = ProbeModel(cnn, "block3", "avg", torch.nn.Linear(1, 16))
    ds = D.CUB(root, "train", view=D.resize_view(96, (0.0,) * 3, (1.0,) * 3))
    ident = {"t": 1}
    a, ya = extract_features(model, ds, identity=ident, cache=tmp_path, progress=False)
    files = list(tmp_path.rglob("chunk_*.npz"))
    assert len(files) == 1
    with np.load(files[0]) as z:
        z_features = z["features"]
    np.testing.assert_array_equal(z_features, a)
    b, yb = extract_features(model, ds, identity=ident, cache=tmp_path, progress=False)  # read back
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ya, ds.labels())
    with torch.no_grad():
        x = torch.stack([ds[i][0] for i in range(3)])
        by_hand = cnn.block3(cnn.block2(cnn.block1(cnn.stem((x - 0.5) / 0.25))))  # SmallCNN.forward's start
        np.testing.assert_allclose(a[:3], by_hand.mean(dim=(2, 3)).numpy(), rtol=1e-5, atol=1e-6)


def test_fit_linear_head_is_adam_on_cross_entropy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    head, losses = fit_linear_head(x, y, 3, lr=1e-2, epochs=3, batch_size=16, seed=1, progress=False)
    # the same steps by hand: seeded init and shuffles, torch.optim.Adam
    torch.manual_seed(1)
    ref = torch.nn.Linear(5, 3)
    g = torch.Generator().manual_seed(1)
    opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(3):
        order = torch.randperm(40, generator=g)
        for lo in range(0, 40, 16):
            idx = order[lo:lo + 16]
            loss = -torch.log_softmax(ref(xt[idx]), 1)[torch.arange(len(idx)), yt[idx]].mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    torch.testing.assert_close(head.weight, ref.weight)
    assert len(losses) == 3


def test_probe_errors_are_one_line(cub, tmp_path, capsys):
    root, _ = cub
    assert cli.main(["probe", "--data", f"cub:{tmp_path}", "--backbone", "cnn", "--out", str(tmp_path / "p.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "images.txt: missing" in err
    assert cli.main(["probe", "--data", f"cub:{root}", "--backbone", "cnn", "--epochs", "0"]) == 2
    (tmp_path / "bad.pt").write_bytes(b"not a probe")
    with pytest.raises(ValueError, match="is not a probe file"):  # a UsageError (a ValueError)
        inputs.load_model(f"probe:{tmp_path / 'bad.pt'}")


def _disc(points, visible, h, w, r):
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    out = np.zeros((h, w), bool)
    for (x, y), v in zip(points, visible, strict=True):
        if v:
            out |= (xx - x) ** 2 + (yy - y) ** 2 <= r * r
    return out


def test_evaluate_loc_and_part_columns_by_hand(cub, tmp_path):
    root, truth = cub
    model = models.load("cnn")
    view = D.resize_view(96, (0.0,) * 3, (1.0,) * 3)
    result = evaluate(model, "block3", f"cub:{root}:test", methods=["gradcam"], finer=False, steps=2,
                      fractions=(0.1,), batch_size=2, limit=2, out_dir=tmp_path, progress=False, verbose=False,
                      transform=view.transform, crop=view.crop)
    records = [json.loads(line) for line in (tmp_path / "per_image.jsonl").read_text().splitlines()[1:]]
    records = sorted((r for r in records if "index" in r), key=lambda r: r["index"])
    ds = D.CUB(root, "test", view=view)
    x = torch.stack([ds[i][0] for i in range(2)])
    maps = np.maximum(FinerCAM(model, "block3")(x, targets=[truth["test"][i].label for i in range(2)]).baseline().maps, 0)
    energy, part_energy, point, part_point = [], [], [], []
    for i in range(2):
        w = truth["test"][i]
        sx, sy = 96 / (96 + W.PAD), 1.0
        x0, y0, x1, y1 = w.box
        cols, rows = (np.arange(96) + 0.5), (np.arange(96) + 0.5)
        box = (rows[:, None] >= y0 * sy) & (rows[:, None] < y1 * sy) & (cols[None, :] >= x0 * sx) & (cols[None, :] < x1 * sx)
        pts = np.stack([w.points[:, 0] * sx, w.points[:, 1] * sy], 1)
        disc = _disc(pts, w.visible, 96, 96, PART_RADIUS * 96)
        m = maps[i].astype(np.float64)
        peak = np.unravel_index(np.argmax(m), m.shape)
        energy.append(m[box].sum() / m.sum())
        part_energy.append(m[disc].sum() / m.sum())
        point.append(bool(box[peak]))
        part_point.append(float(disc[peak]))
        got = records[i]["metrics"]["Grad-CAM"]
        assert got["energy"] == pytest.approx(energy[-1], rel=1e-4)
        assert got["part_energy"] == pytest.approx(part_energy[-1], rel=1e-4)
        assert got["pointing"] == point[-1] and got["part_pointing"] == part_point[-1]
    row = result.rows[0]
    assert row["energy"] == pytest.approx(np.mean(energy), rel=1e-4)
    assert row["part_energy"] == pytest.approx(np.mean(part_energy), rel=1e-4)
    assert row["part_pointing"] == pytest.approx(np.mean(part_point))
    assert not truth["test"][0].visible[W.PART_NAMES.index("eye")]  # image 0's invisible eye drew no disc


@pytest.mark.subprocess
def test_cli_evaluate_with_a_probe_file(cub, trained, tmp_path):
    root, _ = cub
    out = subprocess.run([sys.executable, "-m", "finercam", "evaluate", "--model", f"probe:{trained / 'p.pt'}",
                          "--data", f"cub:{root}", "--limit", "2", "--batch-size", "2", "--methods", "gradcam",
                          "--steps", "2", "--no-progress", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "Part Loc." in out.stdout and "Loc." in out.stdout
