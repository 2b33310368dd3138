"""``finercam layers`` and ``--model hf:DIR``: a tiny random-init Hugging Face classifier saved
with ``save_pretrained`` (and its image processor) to a temporary folder, loaded back offline
by every command, its maps equal to full autograd of the paper's objective on the model that
was saved."""
import os
import subprocess
import sys
from pathlib import Path
from locations import DATA, ROOT, TESTS  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from hf_tiny import FAMILIES, GAMMA, REFS, TARGETS, build, oracle_gradcam

import finercam
from finercam.apps import cli
from finercam.apps.inputs import UsageError, load_model, with_layer
from finercam.apps.layers_command import parse_size

LAYER = "dinov2_with_registers.encoder.layer.1.norm1"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(folder, model): DINOv2 with registers, named classes, a BiT-style processor (resize the
    shortest edge, centre crop 56, mean 0.5, std 0.25)."""
    import transformers

    folder = tmp_path_factory.mktemp("hf") / "dino"
    model = build("dinov2_registers", (56, 56))
    model.config.id2label = {i: f"bird {i}" for i in range(model.config.num_labels)}
    model.config.label2id = {v: k for k, v in model.config.id2label.items()}
    model.save_pretrained(folder)
    processor = transformers.BitImageProcessorPil(size={"shortest_edge": 64}, crop_size={"height": 56, "width": 56},
                                                  do_center_crop=True, image_mean=[0.5] * 3, image_std=[0.25] * 3)
    processor.save_pretrained(folder)
    return folder, model


def test_hf_folder_loads_with_its_preprocessing_names_and_layer(saved):
    folder, model = saved
    found = load_model(f"hf:{folder}")
    assert (found.layer, found.size, found.mean, found.std) == (None, 56, (0.5,) * 3, (0.25,) * 3)
    found = with_layer(found)                      # no layer of its own: the first suggested
    assert found.layer == LAYER
    assert found.class_names == tuple(f"bird {i}" for i in range(6))
    for a, b in zip(found.model.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    from PIL import Image

    x = found.transform(Image.open(DATA / "horses.jpg"))[None].repeat(2, 1, 1, 1)
    x[1] = x[1].flip(-1)
    exp = finercam.FinerCAM(found.model, found.layer, gamma=GAMMA)(x, TARGETS, REFS)
    want = oracle_gradcam(model, x, FAMILIES["dinov2_registers"])
    np.testing.assert_allclose(exp.raw_maps, want, atol=3e-6 * float(np.abs(want).max()), rtol=0)


def test_app_takes_an_hf_folder_without_layer(saved):
    from finercam.apps import app

    folder, _ = saved
    description, load = app.builtin_models(f"hf:{folder}")[f"hf:{folder}"]
    loaded = load()
    assert "suggested" in description
    assert (loaded.layers[0], loaded.mean, loaded.std) == (LAYER, (0.5,) * 3, (0.25,) * 3)   # the first of its layers
    assert loaded.class_names == [f"bird {i}" for i in range(6)]


def test_hf_folder_errors(tmp_path):
    with pytest.raises(UsageError, match="not a save_pretrained folder"):
        load_model(f"hf:{tmp_path / 'missing'}")
    (tmp_path / "config.json").write_text('{"model_type": "no-such-family"}')
    with pytest.raises(UsageError, match="not an image classifier"):
        load_model(f"hf:{tmp_path}")


def test_layers_command_in_process(capsys):
    assert cli.main(["layers", "--model", "cnn"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[:5] == ["1.", "block3", "grid", "12", "x"]
    assert out[2].split()[:2] == ["2.", "block2"]
    assert cli.main(["layers", "--model", "cnn", "--size", "0"]) == 2
    assert "--size" in capsys.readouterr().err
    assert parse_size("84,56") == (84, 56) and parse_size("64") == (64, 64)


def _finercam(*args, cwd):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([str(ROOT), str(cwd)]),
           "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "finercam", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


@pytest.mark.subprocess
@pytest.mark.slow
def test_layers_and_explain_command_line_on_a_saved_checkpoint(saved, tmp_path):
    folder, model = saved
    run = _finercam("layers", "--model", f"hf:{folder}", "--size", "84,56", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    first = run.stdout.splitlines()[1].split()
    assert first[:6] == ["1.", LAYER, "grid", "6", "x", "4"]       # 5 prefix tokens, 14-px patches
    run = _finercam("explain", "--model", f"hf:{folder}", str(DATA / "horses.jpg"), "--out", str(tmp_path / "out"),
                    cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    from PIL import Image

    found = load_model(f"hf:{folder}")
    with torch.no_grad():
        probs = torch.softmax(model(found.transform(Image.open(DATA / "horses.jpg"))[None]).logits, 1)[0]
    top = int(probs.argmax())
    assert f"bird {top} ({top}) {100 * float(probs[top]):.1f}%" in run.stdout
    assert (tmp_path / "out" / "horses_panel.png").is_file()
    run = _finercam("layers", "--model", f"hf:{tmp_path / 'nowhere'}", cwd=tmp_path)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "save_pretrained" in run.stderr


FACTORY = '''
import sys
sys.path.insert(0, {tests!r})
from hf_tiny import build


def dinov2_registers():
    model = build("dinov2_registers", (56, 56))
    model.config.id2label = {{i: f"bird {{i}}" for i in range(model.config.num_labels)}}
    return model
'''


@pytest.mark.subprocess
@pytest.mark.slow
def test_evaluate_hf_folder_equals_the_same_model_by_factory(saved, tmp_path):
    """``finercam evaluate --model hf:DIR`` scores exactly what the same weights built by a
    factory score with the processor's size, mean and std and the suggested layer given by hand."""
    from PIL import Image

    folder, _ = saved
    data = tmp_path / "data"
    for k, name in enumerate(["blue_grosbeak.jpg", "horses.jpg", "dog_cat.jfif"]):
        (data / f"bird {k % 2}").mkdir(parents=True, exist_ok=True)
        Image.open(DATA / name).convert("RGB").resize((80, 64)).save(data / f"bird {k % 2}" / f"{k}.png")
    (tmp_path / "tiny_factory.py").write_text(FACTORY.format(tests=str(TESTS)))
    common = ["--data", str(data), "--methods", "gradcam", "--steps", "4", "--no-progress"]
    by_hf = _finercam("evaluate", "--model", f"hf:{folder}", *common, "--out", str(tmp_path / "hf"), cwd=tmp_path)
    assert by_hf.returncode == 0, by_hf.stderr
    by_hand = _finercam("evaluate", "--model", "tiny_factory:dinov2_registers", "--layer", LAYER, "--size", "56",
                        "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25", *common, "--out", str(tmp_path / "hand"),
                        cwd=tmp_path)
    assert by_hand.returncode == 0, by_hand.stderr
    import json

    rows = [json.loads((tmp_path / d / "table.json").read_text())["rows"] for d in ("hf", "hand")]
    assert [r["setting"] for r in rows[0]] == ["Grad-CAM", "Grad-CAM + Finer"]
    assert rows[0] == rows[1]
