"""``--model PKG.MOD:FACTORY`` without ``--layer`` (or with ``--layer auto``): every command takes
the first layer :func:`finercam.suggest_layers` proposes at the size of the inputs it feeds (its
preprocessing, ``--size``, or a ``Dataset``'s first image), says which on stderr, and computes
exactly what it computes with that layer named by hand. In process, through ``cli.main``."""
import json
import os
import sys

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pytest
from locations import DATA, TESTS  # noqa: E402
from PIL import Image

import finercam
from finercam.apps import cli
from finercam.apps.inputs import load_model, with_layer

sys.path.insert(0, str(TESTS))
import evalkit  # noqa: E402
import models_for_tests  # noqa: E402

TINY = "suggested_layer_factory:tiny_resnet"
PHOTO = DATA / "horses.jpg"
FACTORY = """
from models_for_tests import TinyResNet, seeded


def tiny_resnet():
    return seeded(TinyResNet)   # the same weights at every call
"""


@pytest.fixture(autouse=True)
def factory_module(tmp_path_factory, monkeypatch):
    """``suggested_layer_factory:tiny_resnet``, importable by ``--model``."""
    folder = tmp_path_factory.getbasetemp() / "factory"
    folder.mkdir(exist_ok=True)
    (folder / "suggested_layer_factory.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(folder))


def _first(model, shape) -> str:
    return finercam.suggest_layers(model, shape)[0].name


def _pixels(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def _explain(tmp_path, capsys, name, *layer):
    out = tmp_path / name
    argv = ["explain", str(PHOTO), "--model", TINY, "--size", "48", "--method", "gradcam",
            "--out", str(out), *layer]
    assert cli.main(argv) == 0
    return out, capsys.readouterr().err


def test_explain_without_layer_draws_the_maps_of_the_suggested_layer(tmp_path, capsys):
    # the oracle: suggest_layers itself at --size 48 (layer2, a 12 x 12 grid)
    want = _first(models_for_tests.TinyResNet(), (3, 48, 48))
    assert want == "layer2"
    auto, said = _explain(tmp_path, capsys, "auto")
    assert f"--layer auto: {want}, the first layer suggested for {TINY} at 48 x 48 (grid 12 x 12" in said
    by_hand, said_by_hand = _explain(tmp_path, capsys, "by_hand", "--layer", want)
    assert "--layer auto" not in said_by_hand
    for kind in ("baseline", "finer", "panel"):
        np.testing.assert_array_equal(_pixels(auto / f"horses_{kind}.png"),
                                      _pixels(by_hand / f"horses_{kind}.png"))
    # and the other layer gives another map: the comparison can see a wrong choice
    other, _ = _explain(tmp_path, capsys, "other", "--layer", "layer1")
    assert np.abs(_pixels(other / "horses_finer.png") - _pixels(auto / "horses_finer.png")).max() > 0


def _folder(tmp_path):
    root = tmp_path / "data"
    for k, name in enumerate(["blue_grosbeak.jpg", "horses.jpg", "dog_cat.jfif", "horses.jpg"]):
        (root / f"class{k % 2}").mkdir(parents=True, exist_ok=True)
        Image.open(DATA / name).convert("RGB").resize((60, 40)).save(root / f"class{k % 2}" / f"{k}.png")
    return root


def _table(out):
    return json.loads((out / "table.json").read_text())["rows"]


@pytest.mark.parametrize("model, data, size, shape", [
    (TINY, "folder", ["--size", "48"], (3, 48, 48)),          # the preprocessing's size
    ("evalkit:model", "evalkit:dataset", [], (3, evalkit.SIZE, evalkit.SIZE)),  # the Dataset's images
])
def test_evaluate_without_layer_scores_the_suggested_layer(tmp_path, capsys, model, data, size, shape):
    data = str(_folder(tmp_path)) if data == "folder" else data
    common = ["evaluate", "--model", model, "--data", data, *size, "--methods", "gradcam",
              "--steps", "4", "--batch-size", "2", "--limit", "4", "--target", "predicted",
              "--no-progress"]
    want = _first(load_model(model).model, shape)
    assert cli.main([*common, "--out", str(tmp_path / "auto")]) == 0
    said = capsys.readouterr().err
    assert f"--layer auto: {want}, the first layer suggested for {model} at {shape[1]} x {shape[2]}" in said
    assert cli.main([*common, "--layer", want, "--out", str(tmp_path / "by_hand")]) == 0
    assert cli.main([*common, "--layer", "auto", "--out", str(tmp_path / "explicit_auto")]) == 0
    rows = _table(tmp_path / "auto")
    assert [r["setting"] for r in rows] == ["Grad-CAM", "Grad-CAM + Finer"]
    assert rows == _table(tmp_path / "by_hand") == _table(tmp_path / "explicit_auto")
    assert all(np.isfinite(r["deletion"]) for r in rows)


def test_layers_and_app_name_the_same_layers(capsys):
    from finercam.apps.app import ExplainService, builtin_models

    assert cli.main(["layers", "--model", TINY, "--size", "48"]) == 0
    listed = [line.split()[1] for line in capsys.readouterr().out.splitlines()[1:]]
    suggested = [s.name for s in finercam.suggest_layers(models_for_tests.TinyResNet(), (3, 224, 224))]
    assert listed == ["layer2", "layer1"] == suggested          # the same at 48 and 224 here
    service = ExplainService({**builtin_models(TINY), **builtin_models(TINY, "auto")})
    assert service._model(TINY).layers == ["layer2"]           # --layer auto: the first only
    service = ExplainService(builtin_models(TINY))
    assert service._model(TINY).layers == suggested[:2]        # none: the first two, offered and fused
    assert "layers layer2, layer1, suggested at 224 x 224" in capsys.readouterr().err


def test_a_model_without_any_layout_asks_for_a_layer(capsys, tmp_path):
    assert cli.main(["evaluate", "--model", "torch.nn:Identity", "--data", "evalkit:dataset",
                     "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--layer auto: no layer of Identity" in err and "--layer NAME" in err
    assert not (tmp_path / "out").exists()
    found = with_layer(load_model("cnn"), ["auto", "block2"])  # auto among named layers
    assert found.layer == ["block3", "block2"]
