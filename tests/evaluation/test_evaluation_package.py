"""The pieces of finercam.evaluation, each against numbers worked out by hand or by the metrics."""
import csv
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from locations import ROOT, TESTS  # noqa: E402

from finercam import metrics
from finercam.evaluation import data, plan, scoring, tables
from finercam.evaluation.config import RunConfig
from finercam.evaluation.journal import Journal, read_records

sys.path.insert(0, str(TESTS))
import evalkit  # noqa: E402


def _config(**kw):
    args = dict(methods=["gradcam"], finer=True, gamma=0.6, num_references=3,
                reference_rule="nearest_logit", aggregate="mean", gammas=[], reference_ranks=[],
                aggregations=[], fractions=[0.05, 0.1], steps=4, baseline=0.0, target="label",
                batch_size=4, n_images=10)
    args.update(kw)
    return RunConfig(**args)


# --- journal ------------------------------------------------------------------------------------


def test_journal_round_trip_and_resume_after_a_torn_line(tmp_path):
    config = _config().record()
    first = Journal(tmp_path, 0, config)
    assert first.read() == [] and not tmp_path.joinpath("per_image.jsonl").exists()
    batch0 = [{"index": 0, "metrics": {"Grad-CAM": {"deletion": 0.25}}},
              {"index": 1, "skipped": "OSError: truncated", "path": "a.png"}]
    first.append(batch0)
    own = tmp_path / "per_image.jsonl"
    with open(own, "a") as f:
        f.write('{"index": 2, "metr')          # a process killed mid-write
    header, records, good = read_records(own)
    assert header == {"config": config} and records == batch0
    assert good == len(own.read_bytes()) - len('{"index": 2, "metr')
    # the resumed run reads the complete lines, drops the torn one and appends after them
    again = Journal(tmp_path, 0, config)
    assert again.read() == batch0
    again.append([{"index": 2, "metrics": {}}])
    lines = own.read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[-1]) == {"index": 2, "metrics": {}}
    # another rank writes its own file; every rank's records are read back
    Journal(tmp_path, 1, config).append([{"index": 3, "metrics": {}}])
    assert sorted(r["index"] for r in Journal(tmp_path, 0, config).all_records()) == [0, 1, 2, 3]
    assert [r["index"] for r in Journal(tmp_path, 1, config).own_records()] == [3]


def test_journal_refuses_a_run_of_another_configuration(tmp_path):
    Journal(tmp_path, 0, _config().record()).append([{"index": 0, "metrics": {}}])
    with pytest.raises(ValueError, match="another configuration"):
        Journal(tmp_path, 0, _config(steps=5).record()).read()


# --- tables -------------------------------------------------------------------------------------


def test_one_column_list_and_its_headers():
    keys = [c.key for c in tables.columns((0.05, 0.1))]
    assert keys == ["deletion", "rd@0.05", "rd@0.1", "drop@0.05", "drop@0.1", "energy", "pointing",
                    "disc_energy", "disc_pointing", "insertion", "road_morf", "road_lerf", "road",
                    "part_energy", "part_pointing", "deletion_ref"]
    by_key = {c.key: c for c in tables.columns((0.25,))}
    assert by_key["rd@0.25"].header == "RD@0.25 \u2191" and by_key["deletion"].header == "Del. \u2193"
    assert by_key["deletion"].lower_is_better and not by_key["rd@0.25"].lower_is_better
    assert not by_key["deletion_ref"].shown
    assert by_key["road_morf"].lower_is_better and not by_key["road"].lower_is_better
    assert len(tables.COLUMN_KINDS) == 14


def test_means_skip_undefined_values_and_count_them():
    records = [{"index": i, "metrics": {"A": {"energy": v, "deletion": 0.1 * i}}}
               for i, v in enumerate([0.5, float("nan"), 0.25, 1.0])]
    (row,) = tables.mean_rows(records, ["A"], ["deletion", "energy", "rd@0.05"])
    assert row == {"setting": "A", "deletion": pytest.approx(0.15), "energy": 1.75 / 3,
                   "energy_nan": 1, "n": 4}
    assert math.isnan(tables.mean_of_defined([float("nan")]))


def test_a_table_written_to_markdown_csv_and_json_reads_back(tmp_path):
    rows = [{"setting": "Grad-CAM", "deletion": 0.125, "rd@0.05": 0.5, "energy": float("nan"),
             "deletion_ref": 0.75, "n": 3},
            {"setting": "Grad-CAM + Finer", "deletion": 0.0625, "rd@0.05": -0.0001,
             "energy": 0.25, "deletion_ref": 0.5, "n": 3}]
    result = tables.EvalResult(rows, 3, [{"index": 3, "skipped": "bad", "path": "x.png"}],
                               {"fractions": [0.05]})
    tables.write_table(result, tmp_path / "out")
    md = (tmp_path / "out" / "table.md").read_text().splitlines()
    assert md[0] == "| Method | Del. \u2193 | RD@0.05 \u2191 | Loc. \u2191 |"
    assert md[1] == "|---|---:|---:|---:|"
    assert md[2] == "| Grad-CAM | 0.125 | 0.500 | nan |"
    assert md[3] == "| Grad-CAM + Finer | 0.062 | 0.000 | 0.250 |"    # -0.0001 is 0.000, not -0.000
    assert md[4] == "3 images; 1 unreadable image(s) skipped"
    with open(tmp_path / "out" / "table.csv", newline="") as f:
        back = list(csv.reader(f))
    assert back[0] == ["setting", "deletion", "rd@0.05", "energy", "deletion_ref", "n"]
    assert [float(v) for v in back[2][1:5]] == [0.0625, -0.0001, 0.25, 0.5]
    assert math.isnan(float(back[1][3]))
    table = json.loads((tmp_path / "out" / "table.json").read_text())
    assert table["rows"][0]["energy"] is None and table["rows"][1]["rd@0.05"] == -0.0001
    assert table["n_images"] == 3 and table["skipped"][0]["path"] == "x.png"
    assert table["config"] == {"fractions": [0.05]}


def test_markdown_table_aligns_and_bolds():
    text = tables.markdown_table(["method", "setting", "Del. \u2193"],
                                 [["Grad-CAM", "T = 1", 0.1234], ["", "T = 3", "+0.001 \u00b1 0.002"]],
                                 bold=[(0, 2)], left=2)
    assert text.splitlines() == ["| method | setting | Del. \u2193 |", "|---|---|---:|",
                                 "| Grad-CAM | T = 1 | **0.123** |", "|  | T = 3 | +0.001 \u00b1 0.002 |"]


# --- plan ---------------------------------------------------------------------------------------


def test_the_plan_counts_match_a_hand_count():
    # 16 x 16 = 256 pixels: RD at 5 % and 10 % masks ceil(12.8) = 13 and ceil(25.6) = 26 pixels;
    # 4 deletion steps mask 64, 128, 192 and 256: six distinct masked counts per map.
    assert plan.masked_counts([0.05, 0.1], 4, 256) == 6
    # 20 steps of 10 x 10: 5, 10, ..., 100 pixels; RD's 5 and 10 are steps 1 and 2 (shared)
    assert plan.masked_counts([0.05, 0.1], 20, 100) == 20
    cfg = _config(methods=["gradcam", "scorecam"], gammas=[0.2], reference_ranks=[2])
    # rows per method: base, Finer, gamma=0.2, ref=2 -> 4; two methods -> 8 rows
    assert cfg.rows_per_method() == 4 and len(cfg.settings()) == 8
    cost = plan.run_cost(cfg, channels=8, pixels=256, seconds_per_forward=1e-3)
    # each row: the unmasked image and 6 masked counts = 7 forwards; Score-CAM: 8 channels
    assert cost.forwards == {"RD and deletion (8 rows x 7)": 56, "Score-CAM (8 channels)": 8}
    assert cost.maps == 2 and cost.images == 10
    assert cost.forwards_per_image == 2 * 3 + 56 + 8
    assert cost.seconds == pytest.approx(10 * 70 * 1e-3)
    # Score-CAM joins the defaults when channels <= 4 x the metric forwards of its rows (4 x 7 x 4)
    assert plan.default_methods(cfg, 112, 256) == ["gradcam", "layercam", "scorecam"]
    assert plan.default_methods(cfg, 113, 256) == ["gradcam", "layercam"]
    # the batch grid: 10 images in batches of 4
    assert cfg.n_batches() == 3 and list(cfg.batch_indices(2)) == [8, 9]


def test_the_chunk_rule_fits_the_input_budget():
    # a 3 x 224 x 224 float32 input is 588 KiB: 8 fit in 8 MiB, 16 do not
    assert plan.rule_chunk_size(torch.zeros(3, 224, 224)) == 8
    assert plan.choose_chunk_size(torch.nn.Identity(), torch.zeros(3, 16, 16), 5, None) == 5


# --- data ---------------------------------------------------------------------------------------


def test_data_spec_errors_name_the_argument(tmp_path):
    with pytest.raises(ValueError, match="^--data must be a folder, a registered data set"):
        data.resolve_data(str(tmp_path / "missing"), argument="--data")
    with pytest.raises(ValueError, match="^--data: cannot import 'no_such_module_xyz'"):
        data.resolve_data("no_such_module_xyz:make", argument="--data")
    with pytest.raises(ValueError, match="^--data: 'evalkit' has no attribute 'nothing'"):
        data.resolve_data("evalkit:nothing", argument="--data")
    with pytest.raises(TypeError, match="^dataset must be a Dataset"):
        data.resolve_data(42)
    with pytest.raises(ValueError, match="^dataset is required"):
        data.resolve_data(None)
    with pytest.raises(ValueError, match="^dataset: the preprocessing options apply to a folder"):
        data.resolve_data(evalkit.BoxDataset(n=2), transform=data.default_transform(16))
    assert isinstance(data.resolve_data("evalkit:BoxDataset"), evalkit.BoxDataset)


def test_a_registered_reader_is_one_entry(monkeypatch):
    calls = []

    def reader(root, split, *, transform, crop, class_names):
        calls.append((root, split, transform, crop, class_names))
        return [(torch.zeros(3, 4, 4), 0)]

    monkeypatch.setitem(sys.modules, "fake_readers", type(sys)("fake_readers"))
    sys.modules["fake_readers"].toy = reader
    monkeypatch.setitem(data.READERS, "toy", "fake_readers:toy")
    t = data.default_transform(8)
    assert data.reads_images("toy:/data/toys:test") and not data.reads_images("evalkit:dataset")
    assert len(data.resolve_data("toy:/data/toys:test", transform=t, class_names=["a"])) == 1
    assert len(data.resolve_data("toy:/data/toys")) == 1
    assert calls == [("/data/toys", "test", t, None, ["a"]), ("/data/toys", None, None, None, None)]
    with pytest.raises(ValueError, match=r"\(aircraft, birds525, cars, cub, fishvista, toy\)"):   # the message lists the registered names
        data.resolve_data("nowhere", argument="--data")


def test_items_split_into_image_label_region_and_parts():
    x = torch.zeros(3, 4, 4)
    parts = np.zeros((2, 4, 4), bool)
    assert data.split_item((x, 3), 0) == (x, 3, None, None)
    item = data.split_item({"image": x, "label": 2, "mask": np.ones((4, 4)), "parts": parts}, 5)
    assert item.label == 2 and item.region.shape == (4, 4) and item.parts is parts
    item = data.split_item((x, np.int64(1), {"box": (0, 0, 2, 2), "parts": parts}), 0)
    assert item.region == (0, 0, 2, 2) and item.parts is parts and type(item.label) is int
    with pytest.raises(TypeError, match=r"dataset\[7\] must be"):
        data.split_item((x,), 7)
    with pytest.raises(TypeError, match=r"dataset\[1\] image must be a \(C, H, W\) tensor"):
        data.split_item((torch.zeros(4, 4), 0), 1)
    box = data.region_mask(torch.tensor([1.0, 0.0, 3.0, 2.0]), 3, 4)
    assert box.astype(int).tolist() == [[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]


def test_class_matching_exact_then_loose():
    assert data.match_classes(["crow", "Blue_Jay"], ["blue jay", "crow", "Crow"]) == [1, 0]
    with pytest.raises(ValueError, match="^labels: 1 of the 2 class folders"):
        data.match_classes(["crow", "wren"], ["crow"])


# --- scoring ------------------------------------------------------------------------------------


def test_scores_with_a_deletion_prefix_equal_the_metrics():
    net = evalkit.model().eval()
    ds = evalkit.BoxDataset(n=6)
    x = torch.stack([ds[i][0] for i in range(6)])
    y = np.array([ds[i][1] for i in range(6)])
    maps = np.random.default_rng(0).random((6, 16, 16)).astype(np.float32)
    d = (y + 1) % evalkit.CLASSES
    full = scoring.score_maps(net, x, maps, y, d, steps=4, chunk=5)
    part = scoring.score_maps(net, x, maps, y, d, steps=4, chunk=5, deletion_images=4)
    oracle = metrics.deletion_auc(net, x[:4], maps[:4], y[:4], steps=4, compare_to=d[:4])
    np.testing.assert_allclose(part["deletion"][:4], oracle.auc, atol=1e-12)
    np.testing.assert_allclose(part["deletion_ref"][:4], oracle.reference_auc, atol=1e-12)
    assert np.isnan(part["deletion"][4:]).all()
    np.testing.assert_allclose(full["deletion"][:4], oracle.auc, atol=1e-6)
    np.testing.assert_allclose(part["rd@0.05"], metrics.relative_drop(net, x, maps, y, d, 0.05),
                               atol=1e-12)
    assert set(full) == {"rd@0.05", "rd@0.1", "drop@0.05", "drop@0.1", "deletion", "deletion_ref"}


def test_region_scores_against_numpy():
    rng = np.random.default_rng(1)
    maps = rng.random((3, 5, 5))
    masks = rng.random((2, 5, 5)) > 0.5
    got = scoring.region_scores(maps, masks, np.array([True, False, True]), prefix="disc_")
    chosen = maps[[0, 2]]
    want = (chosen * masks).sum((1, 2)) / chosen.sum((1, 2))
    np.testing.assert_allclose(got["disc_energy"][[0, 2]], want)
    assert np.isnan(got["disc_energy"][1])
    peaks = [np.unravel_index(np.argmax(m), m.shape) for m in chosen]
    assert got["disc_pointing"].tolist() == [bool(masks[0][peaks[0]]), False, bool(masks[1][peaks[1]])]


def test_setting_maps_follow_the_explanation():
    import finercam

    net = evalkit.model().eval()
    x = evalkit.BoxDataset(n=3).images
    exp = finercam.FinerCAM(net, evalkit.LAYER, num_references=2, candidates=3)(x, targets=[0, 1, 2])
    rows = {s.name: s for s in scoring.settings(["gradcam"], gammas=[0.0], reference_ranks=[2],
                                                 aggregations=["max"])}
    np.testing.assert_array_equal(scoring.setting_maps(exp, rows["Grad-CAM"]), exp.baseline().maps)
    np.testing.assert_array_equal(scoring.setting_maps(exp, rows["Grad-CAM + Finer"]), exp.maps)
    second = exp.candidates[:, 2:3].tolist()
    np.testing.assert_array_equal(scoring.setting_maps(exp, rows["Grad-CAM + Finer ref=2"]),
                                  exp.recombine(references=second).maps)
    np.testing.assert_array_equal(scoring.setting_maps(exp, rows["Grad-CAM + Finer agg=max"]),
                                  exp.recombine(aggregate="max").maps)
    # gamma 0 is the base method
    np.testing.assert_allclose(scoring.setting_maps(exp, rows["Grad-CAM + Finer gamma=0"]),
                               exp.baseline().maps, atol=1e-6)


@pytest.mark.slow
@pytest.mark.subprocess
def test_import_finercam_stays_cheap_and_finercam_evaluate_is_the_runner():
    code = ("import sys, finercam\n"
            "print(any(m.startswith('finercam.evaluation') for m in sys.modules))\n"
            "from finercam.evaluation import evaluate\n"
            "print(finercam.evaluate is evaluate)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert out.stdout.split() == ["False", "True"], out.stderr


def test_the_package_is_engine_level():
    """finercam.evaluation imports neither the applications nor the bird world (the engine's
    rule of tests/engine/test_layout.py, which counts these files as engine)."""
    import importlib.util

    # tests/engine is on sys.path only when pytest collected it: load the module by its path
    spec = importlib.util.spec_from_file_location("layout_rules", TESTS / "engine" / "test_layout.py")
    layout = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(layout)
    PACKAGE, _imported_modules, _layer = layout.PACKAGE, layout._imported_modules, layout._layer

    sources = sorted((PACKAGE / "evaluation").rglob("*.py"))
    assert len(sources) >= 9 and all(_layer(p) == "engine" for p in sources)
    for path in sources:
        bad = [m for m in _imported_modules(path) if m.startswith(("finercam.apps", "finercam.world"))]
        assert not bad, f"{path.name} imports {bad}"


def test_the_command_line_names_data_in_its_errors(tmp_path, capsys):
    from finercam.apps.cli import main

    base = ["evaluate", "--model", "evalkit:model", "--layer", evalkit.LAYER, "--no-progress"]
    assert main([*base, "--data", str(tmp_path / "none")]) == 2
    assert "--data must be a folder, a registered data set" in capsys.readouterr().err
    assert main([*base, "--data", "evalkit:dataset", "--size", "16"]) == 2
    assert "--data: the preprocessing options apply to a folder" in capsys.readouterr().err


def test_auto_target_layer_is_the_first_suggestion_at_the_images_size():
    """evaluate(model, "auto", ...) scores the layer finercam.suggest_layers names first for the
    data's image size: the same rows as naming that layer."""
    import evalkit

    import finercam

    suggested = finercam.suggest_layers(evalkit.model(), (evalkit.SIZE, evalkit.SIZE))[0].name
    kw = dict(methods=["gradcam"], steps=4, verbose=False, progress=False)
    auto = finercam.evaluate(evalkit.model(), "auto", evalkit.BoxDataset(4), **kw)
    named = finercam.evaluate(evalkit.model(), suggested, evalkit.BoxDataset(4), **kw)
    # the last conv block's ReLU, not the head's 2 x 2 adaptive pooling
    assert suggested == "3" and auto.rows == named.rows and len(auto.rows) == 2
