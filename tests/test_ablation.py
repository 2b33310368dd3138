"""benchmarks/ablation.py on a few images: its rows against independent FinerCAM calls."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import finercam
from finercam.world import datasets, models

ROOT = Path(__file__).resolve().parents[1]
#: The study runs on 4 images of two models (about 20 s on a busy core).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ablation():
    spec = importlib.util.spec_from_file_location("ablation", ROOT / "benchmarks" / "ablation.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def result(ablation, tmp_path_factory):
    out = tmp_path_factory.mktemp("ablation")
    assert ablation.main(["--n", "4", "--score-n", "2", "--rd-n", "4", "--probe-rd-n", "0", "--models", "cnn,probe",
                          "--layers", "default", "--chunk", "2", "--out", str(out)]) == 0
    return out, json.loads((out / "ablation.json").read_text())


def test_rows_cover_the_axes(ablation, result):
    out, res = result
    rows = res["rows"]
    keys = {"model", "layer", "method", "gamma", "T", "rule", "aggregate", "disc_energy", "disc_energy_se",
            "part_pg", "box_energy", "rd5", "rd5_se", "map_corr", "n"}
    assert keys <= set(rows[0])
    per_run = len(ablation.settings())
    assert per_run == 2 * len(ablation.GAMMAS) + 1 + 4 + 2
    runs = {(r["model"], r["layer"], r["method"]) for r in rows}
    assert runs == {("cnn", "block3", "gradcam"), ("cnn", "block3", "layercam"), ("cnn", "block3", "scorecam"),
                    ("probe", "_bn1", "gradcam"), ("probe", "_bn1", "layercam")}
    assert len(rows) == per_run * len(runs)
    for r in rows:
        if r["gamma"] == 0:  # the base method against itself
            assert r["map_corr"] == pytest.approx(1.0) and r["disc_energy_diff"] == 0.0
    assert all(np.isnan(r["rd5"]) for r in rows if r["model"] == "probe")
    for name in ("curves_disc_energy.png", "curves_rd5.png", "similarity.png"):
        assert (out / name).stat().st_size > 1000


def test_a_row_equals_a_direct_finercam_call(result):
    """weight_similarity, T = 3, max aggregation: FinerCAM with those settings (no recombine),
    then the energy share and RD@0.05 recomputed with NumPy and plain torch."""
    _, res = result
    row = next(r for r in res["rows"] if r["model"] == "cnn" and r["method"] == "gradcam"
               and r["rule"] == "weight_similarity" and r["T"] == 3)
    b = datasets.generate(4, seed=0, split="test")
    net = models.load("cnn")
    x = torch.from_numpy(b.images)
    exp = finercam.FinerCAM(net, "block3", gamma=0.6, num_references=3, reference_rule="weight_similarity")(
        x, targets=torch.as_tensor(b.labels))
    maps = exp.maps
    region = np.stack([datasets.discriminative_mask(b.parts[i], int(b.labels[i]), exp.references[i].tolist())
                       for i in range(4)])
    share = (maps * region).sum((1, 2)) / maps.sum((1, 2))
    assert row["disc_energy"] == pytest.approx(float(share.mean()), abs=1e-5)
    # RD@0.05: mask the top ceil(0.05 * 96 * 96) = 461 pixels to 0
    k = int(np.ceil(0.05 * 96 * 96))
    masked = x.clone()
    for i in range(4):
        top = np.argsort(-maps[i].ravel(), kind="stable")[:k]
        masked[i].view(3, -1)[:, top] = 0.0
    with torch.no_grad():
        p0, p1 = torch.softmax(net(x).double(), 1), torch.softmax(net(masked).double(), 1)
    t, d, rows = b.labels, exp.references[:, 0], np.arange(4)
    rd = (p0[rows, t] - p1[rows, t]) - (p0[rows, d] - p1[rows, d])
    assert row["rd5"] == pytest.approx(float(rd.mean()), abs=1e-5)
