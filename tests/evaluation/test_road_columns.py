"""The ROAD and insertion columns of finercam.evaluation against the public metrics computed
batch by batch (the oracle of tests/test_evaluate.py), and the command line's --road and
--insertion-steps."""
import json
import sys

import numpy as np
import torch
from locations import TESTS

import finercam
from finercam import metrics
from finercam.apps.cli import main as cli_main
from finercam.evaluation import evaluate

sys.path.insert(0, str(TESTS))
import evalkit  # noqa: E402

FAST = dict(methods=["gradcam"], steps=4, batch_size=4, chunk_size=16, progress=False, verbose=False)


def test_road_and_insertion_rows_are_means_of_the_public_metrics(tmp_path):
    model, ds = evalkit.model(), evalkit.dataset()
    res = evaluate(model, evalkit.LAYER, ds, out_dir=tmp_path, road_fractions=(0.2, 0.6),
                   insertion_steps=5, **FAST)
    cam = finercam.FinerCAM(model.eval(), evalkit.LAYER, method="gradcam")
    per: dict = {"Grad-CAM": [], "Grad-CAM + Finer": []}
    for b in range(0, len(ds), 4):
        items = [ds[i] for i in range(b, min(len(ds), b + 4))]
        x = torch.stack([it[0] for it in items])
        y = np.array([it[1] for it in items])
        exp = cam(x, targets=y)
        for name, maps in (("Grad-CAM", exp.baseline().maps), ("Grad-CAM + Finer", exp.maps)):
            r = metrics.road(model, x, maps, y, (0.2, 0.6), seed=b)   # seed: the batch's first index
            ins = metrics.insertion_auc(model, x, maps, y, steps=5)
            per[name].append(np.stack([r.morf, r.lerf, r.combined, ins.auc], 1))
    for row in res.rows:
        want = np.concatenate(per[row["setting"]]).mean(0)
        np.testing.assert_allclose([row["road_morf"], row["road_lerf"], row["road"], row["insertion"]],
                                   want, atol=1e-9)
    header = res.markdown().splitlines()[0]
    assert "Ins. ↑ | ROAD-MoRF ↓ | ROAD-LeRF ↑ | ROAD ↑" in header
    cfg = json.loads((tmp_path / "per_image.jsonl").read_text().splitlines()[0])
    assert "road_fractions" in json.dumps(cfg) and "insertion_steps" in json.dumps(cfg)


def test_the_command_line_adds_the_columns(tmp_path, capsys):
    cli = ["evaluate", "--model", "evalkit:model", "--layer", evalkit.LAYER, "--data", "evalkit:dataset",
           "--methods", "gradcam", "--steps", "4", "--batch-size", "4", "--chunk-size", "16",
           "--no-progress", "--no-finer", "--road", "0.5", "--insertion-steps", "3", "--out", str(tmp_path)]
    assert cli_main(cli) == 0
    table = json.loads((tmp_path / "table.json").read_text())
    row = table["rows"][0]
    assert {"road_morf", "road_lerf", "road", "insertion"} <= set(row)
    assert abs(row["road"] - (row["road_lerf"] - row["road_morf"]) / 2) < 1e-12
