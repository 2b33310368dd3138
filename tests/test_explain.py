"""`finercam explain`: real photographs in, overlays out; bad input gives one line and exit 2."""
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pytest
import torch
from PIL import Image

from finercam import _reference
from finercam.apps.explain import main, read_image

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent
PHOTOS = ["blue_grosbeak.jpg", "dog_cat.jfif", "horses.jpg"]

# A user's model in a user's module: Conv -> ReLU -> GAP -> Linear, so Grad-CAM is known exactly.
USER_MODULE = textwrap.dedent('''
    import torch
    from torch import nn

    def build():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 6, 5, stride=4, padding=2), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5))

    def small(image):
        import numpy as np
        x = torch.from_numpy(np.asarray(image.resize((40, 32)), dtype=np.float32) / 255.0)
        return x.permute(2, 0, 1)

    def bad_transform(image):
        return "not a tensor"

    not_a_model = 3
''')


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_models_for_test.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "user_models_for_test"
    sys.modules.pop("user_models_for_test", None)


def _one_line_error(capsys, argv, *words):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("finercam explain: error:")
    for w in words:
        assert w in err, err
    return err


@pytest.mark.parametrize("name", PHOTOS)
def test_read_image_gives_rgb_of_the_file_size(name):
    im = read_image(DATA / name)
    with Image.open(DATA / name) as raw:
        size = raw.size
    assert im.mode == "RGB" and im.size == size


def test_read_image_modes(tmp_path):
    rgb = np.zeros((5, 7, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.png")
    assert np.asarray(read_image(tmp_path / "grey.png"))[0, 0].tolist() == [200, 200, 200]
    rgba = np.concatenate([rgb, np.zeros((5, 7, 1), np.uint8)], -1)  # fully transparent
    Image.fromarray(rgba).save(tmp_path / "clear.png")
    assert np.asarray(read_image(tmp_path / "clear.png"))[0, 0].tolist() == [255, 255, 255]
    Image.fromarray(rgb).convert("P").save(tmp_path / "pal.gif")
    assert np.asarray(read_image(tmp_path / "pal.gif")).shape == (5, 7, 3)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    assert read_image(tmp_path / "cmyk.jpg").mode == "RGB"


def test_unreadable_images_give_one_line(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not an image")
    _one_line_error(capsys, [str(tmp_path / "notes.txt")], "notes.txt", "not an image")
    _one_line_error(capsys, [str(tmp_path / "missing.jpg")], "missing.jpg", "no such file")
    data = (DATA / "blue_grosbeak.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    _one_line_error(capsys, [str(tmp_path / "cut.jpg")], "cut.jpg")
    _one_line_error(capsys, [str(tmp_path)], "no such file")  # a folder
    assert not (Path.cwd() / "finercam-explain").exists()


@pytest.mark.parametrize("extra, words", [
    (["--method", "nope"], ["--method", "nope"]),
    (["--gamma", "-1"], ["--gamma"]),
    (["--references", "0"], ["--references"]),
    (["--alpha", "2"], ["--alpha"]),
    (["--model", "nocolon"], ["--model", "package.module:name"]),
    (["--model", "no_such_module_xyz:f", "--layer", "0"], ["--model", "no_such_module_xyz"]),
    (["--model", "os:no_such_attr", "--layer", "0"], ["--model", "no_such_attr"]),
    (["--model", "os.path:join"], ["--layer", "required"]),
])
def test_bad_arguments_give_one_line(capsys, extra, words, tmp_path):
    _one_line_error(capsys, [str(DATA / PHOTOS[0]), "--out", str(tmp_path / "o"), *extra], *words)


def test_user_model_errors(capsys, user_module, tmp_path):
    img = str(DATA / PHOTOS[0])
    _one_line_error(capsys, [img, "--model", f"{user_module}:not_a_model", "--layer", "0"],
                    "not callable")
    _one_line_error(capsys, [img, "--model", f"{user_module}:build", "--layer", "nolayer",
                             "--out", str(tmp_path)], "nolayer")
    _one_line_error(capsys, [img, "--model", f"{user_module}:build", "--layer", "1",
                             "--transform", f"{user_module}:bad_transform", "--out", str(tmp_path)],
                    "tensor")


def test_out_must_be_a_folder(capsys, tmp_path):
    (tmp_path / "f").write_text("x")
    _one_line_error(capsys, [str(DATA / PHOTOS[0]), "--out", str(tmp_path / "f")], "--out")


def _expected_overlay(photo: Image.Image, net, gamma: float, T: int, size=224) -> np.ndarray:
    """The paper's Eq. 5-8 with plain autograd, the default transform written out, the map
    resized by the NumPy twin and blended with jet at alpha 0.5."""
    from matplotlib import colormaps

    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    x = torch.from_numpy(np.asarray(photo.resize((size, size), Image.BILINEAR), np.float32) / 255)
    x = ((x.permute(2, 0, 1) - mean) / std)[None]
    with torch.no_grad():
        a = net[1](net[0](x))
    a.requires_grad_(True)
    y = net[4](net[3](net[2](a)))[0]
    c = int(y.argmax())
    order = torch.argsort((y - y[c]).abs())
    refs = [int(r) for r in order if int(r) != c][:T]
    (g,) = torch.autograd.grad(y[c] - gamma * y[refs].mean(), a)
    alpha = g.mean(dim=(2, 3))[0]
    raw = torch.relu((alpha[:, None, None] * a[0]).sum(0)).detach().numpy()
    m = _reference.postprocess(raw[None], (photo.height, photo.width))[0]
    img = np.asarray(photo, np.float64) / 255.0
    return 0.5 * img + 0.5 * colormaps["jet"](m)[..., :3]


@pytest.mark.parametrize("name", PHOTOS)
def test_user_model_overlays_match_the_paper_equations(name, user_module, tmp_path, capsys):
    import importlib

    out = tmp_path / "maps"
    code = main([str(DATA / name), "--model", f"{user_module}:build", "--layer", "1",
                 "--gamma", "0.6", "--references", "3", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    stem = Path(name).stem
    assert sorted(p.name for p in out.iterdir()) == [f"{stem}_{k}.png" for k in
                                                     ("baseline", "finer", "panel")]
    photo = read_image(DATA / name)
    net = importlib.import_module(user_module).build()
    for kind, gamma in (("finer", 0.6), ("baseline", 0.0)):
        got = np.asarray(Image.open(out / f"{stem}_{kind}.png").convert("RGB"), np.float64)
        want = np.round(_expected_overlay(photo, net, gamma, 3) * 255)
        assert got.shape == want.shape
        diff = np.abs(got - want)
        assert np.mean(diff) < 0.3 and np.percentile(diff, 99.9) <= 3, (kind, diff.max())
    with Image.open(out / f"{stem}_panel.png") as panel:
        assert np.asarray(panel.convert("L")).std() > 10
    assert f"{name}: class" in capsys.readouterr().out


def test_transform_option_and_name_collisions(user_module, tmp_path, capsys):
    out = tmp_path / "o"
    img = DATA / "dog_cat.jfif"
    copy = tmp_path / "other" / "dog_cat.png"
    copy.parent.mkdir()
    read_image(img).save(copy)
    code = main([str(img), str(copy), "--model", f"{user_module}:build", "--layer", "1",
                 "--transform", f"{user_module}:small", "--method", "layercam", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    names = sorted(p.name for p in out.iterdir())
    assert names == ["dog_cat-2_baseline.png", "dog_cat-2_finer.png", "dog_cat-2_panel.png",
                     "dog_cat_baseline.png", "dog_cat_finer.png", "dog_cat_panel.png"]
    # With --transform the overlay is drawn on the model's own 40 x 32 input.
    assert Image.open(out / "dog_cat_finer.png").size == (40, 32)
