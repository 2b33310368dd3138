"""`finercam explain`: real photographs in, overlays out; bad input gives one line and exit 2."""
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from locations import DATA, ROOT  # noqa: E402

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pytest
import torch
from PIL import Image

from finercam import _twins
from finercam.apps.explain import main
from finercam.images import read_image

PHOTOS = ["blue_grosbeak.jpg", "dog_cat.jfif", "horses.jpg"]

# A user's model in a user's module: Conv -> ReLU -> GAP -> Linear, so Grad-CAM is known exactly.
USER_MODULE = textwrap.dedent('''
    import torch
    from torch import nn

    CALLS = [0]  # forward calls of every model built here

    def _count(module, args):
        CALLS[0] += 1

    def build():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 6, 5, stride=4, padding=2), nn.ReLU(),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5))
        net.register_forward_pre_hook(_count)
        return net

    def build_named():
        net = build()
        net.config = type("Config", (), {"id2label": {str(i): f"bird {i}" for i in range(5)},
                                         "num_labels": 5})()
        return net

    def build_empty():
        """Class 0 wins by its bias, but every reference weighs the (non-negative) features
        more: y_0 - gamma * mean y_t has negative weights and the ReLU empties the map."""
        net = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                            nn.Flatten(), nn.Linear(2, 3))
        with torch.no_grad():
            net[4].weight.copy_(torch.tensor([[1.0, 1.0], [3.0, 3.0], [2.0, 2.0]]))
            net[4].bias.copy_(torch.tensor([100.0, 0.0, 0.0]))
        return net

    def build_softmax():
        return nn.Sequential(build(), nn.Softmax(dim=1))

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


def test_unreadable_images_give_one_line_each_and_no_output(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("not an image")
    data = (DATA / "blue_grosbeak.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    (tmp_path / "folder").mkdir()
    code = main(["notes.txt", "missing.jpg", "cut.jpg", "folder"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2  # none could be read (1 when some could: see the bad-input test)
    assert len(err) == 4, err
    for line, words in zip(err, (["notes.txt", "not an image"], ["missing.jpg", "no such file"],
                                 ["cut.jpg"], ["folder", "a folder"])):
        assert all(w in line for w in words), line
    assert not (tmp_path / "finercam-explain").exists()  # no image reached the model


@pytest.mark.parametrize("extra, words", [
    (["--method", "nope"], ["--method", "nope"]),
    (["--gamma", "-1"], ["--gamma"]),
    (["--num-references", "0"], ["--num-references"]),
    (["--references", "no such bird"], ["--references", "no such bird"]),
    (["--target", "nobird"], ["--target", "nobird"]),
    (["--target", "99"], ["--target", "out of range"]),
    (["--references", "blue jay,8"], ["--references", "twice"]),
    (["--reference-gamma", "nan"], ["--reference-gamma"]),
    (["--size", "3"], ["--size"]),
    (["--std", "0,1,1"], ["--std"]),
    (["--mean", "a,b,c"], ["--mean", "comma-separated"]),
    (["--transform", "os:getcwd", "--size", "64"], ["--transform", "alone"]),
    (["--alpha", "2"], ["--alpha"]),
    (["--model", "nocolon"], ["--model", "cnn, vit, imagenet", "package.module:factory"]),
    (["--model", "no_such_module_xyz:f", "--layer", "0"], ["--model", "no_such_module_xyz"]),
    (["--model", "os:no_such_attr", "--layer", "0"], ["--model", "no_such_attr"]),
    (["--model", "torch.nn:Identity"], ["--layer auto", "no layer of Identity", "--layer NAME"]),
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
    m = _twins.postprocess(raw[None], (photo.height, photo.width))[0]
    img = np.asarray(photo, np.float64) / 255.0
    return 0.5 * img + 0.5 * colormaps["jet"](m)[..., :3]


@pytest.mark.parametrize("name", PHOTOS)
def test_user_model_overlays_match_the_paper_equations(name, user_module, tmp_path, capsys):
    import importlib

    out = tmp_path / "maps"
    code = main([str(DATA / name), "--model", f"{user_module}:build", "--layer", "1",
                 "--gamma", "0.6", "--num-references", "3", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    stem = Path(name).stem
    assert sorted(p.name for p in out.iterdir()) == [f"{stem}_{k}.png" for k in
                                                     ("baseline", "finer", "panel")] + ["index.html"]
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
                     "dog_cat_baseline.png", "dog_cat_finer.png", "dog_cat_panel.png", "index.html"]
    # Whatever the transform (here 40 x 32), the overlay is at the photo's own size.
    assert Image.open(out / "dog_cat_finer.png").size == read_image(img).size


def _bad_inputs(folder: Path) -> tuple[list[Path], list[Path]]:
    """Odd but readable images, and unreadable ones, made with Pillow."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    good = {"grey.png": Image.fromarray(rgb[..., 0]), "cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
            "palette.png": Image.fromarray(rgb).convert("P"),
            "deep.png": Image.fromarray((np.arange(30 * 40, dtype=np.uint16).reshape(30, 40) * 50))}
    for name, im in good.items():
        im.save(folder / name)
    frames = [Image.new("RGB", (40, 30), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    data = (DATA / "horses.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "a_folder").mkdir()
    readable = [folder / n for n in (*good, "anim.gif")]
    return readable, [folder / n for n in ("truncated.jpg", "empty.jpg", "a_folder")]


def test_bad_input_is_decoded_or_reported_and_the_rest_processed(tmp_path, user_module, capsys):
    readable, broken = _bad_inputs(tmp_path)
    # The decoded pixels: 16-bit scaled by 65535, the animation's first frame, CMYK back to RGB.
    deep = np.asarray(read_image(tmp_path / "deep.png"))[..., 0].astype(float)
    want = np.round(np.arange(30 * 40).reshape(30, 40) * 50 / 65535 * 255)
    assert np.abs(deep - want).max() <= 1
    assert read_image(tmp_path / "anim.gif").getpixel((0, 0)) == (255, 0, 0)
    assert read_image(tmp_path / "grey.png").getpixel((3, 2))[0] == read_image(tmp_path / "grey.png").getpixel((3, 2))[2]
    out = tmp_path / "out"
    args = [str(p) for p in readable[:2] + broken + readable[2:]]
    code = main(args + ["--model", f"{user_module}:build", "--layer", "1", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    err = [line for line in captured.err.splitlines() if "cannot read image" in line]
    assert len(err) == 3 and [p.name in line for p, line in zip(broken, err)] == [True] * 3, err
    assert "empty" in err[1] and "folder" in err[2]
    for p in readable:
        with Image.open(out / f"{p.stem}_finer.png") as im:
            assert im.size == (40, 30)
        assert f"{p}: class" in captured.out


def test_one_model_call_per_image(tmp_path, user_module, capsys):
    import importlib

    calls = importlib.import_module(user_module).CALLS
    calls[0] = 0
    photos = [str(DATA / n) for n in PHOTOS[:2]]
    code = main(photos + ["--model", f"{user_module}:build", "--layer", "1", "--out", str(tmp_path / "o")])
    assert code == 0, capsys.readouterr().err
    # Panels with 3 + 3 + 5 maps each, from one forward (and backward) per image.
    assert calls[0] == 2
    # Before the rest, the plan and an estimate from the first image's time (no extra forward).
    err = capsys.readouterr().err
    assert "finercam explain: 2 images, one model call per image" in err
    assert "about" in err and "for the other 1." in err


def test_labels_file_names_everything(tmp_path, user_module, capsys):
    import importlib

    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"finch {i}\n" for i in range(5)))
    out = tmp_path / "o"
    code = main([str(DATA / PHOTOS[0]), "--model", f"{user_module}:build", "--layer", "1",
                 "--labels", str(labels), "--references", "finch 3,finch 1", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    assert "references: finch 3 (3), finch 1 (1)" in text and "class " not in text
    page = (out / "index.html").read_text()
    assert "finch 3 (3)" in page and "Top-5" in page
    # A count that differs from the model's 5 outputs: one line, before any model call.
    labels.write_text("a\nb\nc\n")
    calls = importlib.import_module(user_module).CALLS
    calls[0] = 0
    _one_line_error(capsys, [str(DATA / PHOTOS[0]), "--model", f"{user_module}:build", "--layer", "1",
                             "--labels", str(labels), "--out", str(tmp_path / "o2")],
                    "--labels holds 3 names but the model has 5 classes")
    assert calls[0] == 0 and not (tmp_path / "o2").exists()


def test_names_from_config_id2label(tmp_path, user_module, capsys):
    code = main([str(DATA / PHOTOS[0]), "--model", f"{user_module}:build_named", "--layer", "1",
                 "--target", "bird 2", "--out", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert code == 0
    assert f"{DATA / PHOTOS[0]}: bird 2 (2)" in out and "references: bird" in out


def test_probability_outputs_warn(tmp_path, user_module, capsys):
    with pytest.warns(UserWarning, match="probabilities .* logits"):
        code = main([str(DATA / PHOTOS[0]), "--model", f"{user_module}:build_softmax", "--layer", "0.1",
                     "--out", str(tmp_path / "o")])
    assert code == 0


def test_empty_maps_are_said(tmp_path, user_module, capsys):
    out = tmp_path / "o"
    code = main([str(DATA / PHOTOS[0]), "--model", f"{user_module}:build_empty", "--layer", "1",
                 "--num-references", "2", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    # alpha = 1 - 0.6 * (3 + 2) / 2 < 0 (default) and 1 - 1.0 * 3 or 2 < 0 (each reference alone).
    assert text.count("empty map") == 3, text
    page = (out / "index.html").read_text()
    assert "n/a" in page


def test_html_writes_the_interactive_view_of_the_same_explanation(tmp_path, user_module, capsys):
    """--html: one view per image, linked from index.html, holding the same explanation (its
    stored classes and raw maps recomputed here with FinerCAM on the same input) and, as the photo,
    the network's input with the ImageNet normalisation undone."""
    import base64
    import importlib
    import io
    import json
    import re

    import finercam
    from finercam.apps.inputs import IMAGENET_MEAN, IMAGENET_STD, default_transform
    from finercam.explorer import view_data

    out = tmp_path / "o"
    code = main([str(DATA / PHOTOS[0]), "--model", f"{user_module}:build", "--layer", "1", "--html",
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    stem = Path(PHOTOS[0]).stem
    page = (out / f"{stem}.html").read_text()
    assert f'href="{stem}.html"' in (out / "index.html").read_text()
    data = json.loads(re.search(r'<script type="application/json" id="finercam-data">(.*?)</script>',
                                page, re.S).group(1))
    x = default_transform()(read_image(DATA / PHOTOS[0]))[None]
    net = importlib.import_module(user_module).build()
    want = view_data(finercam.FinerCAM(net, "1", candidates=10)(x))
    got_item, want_item = data["images"][0], want["images"][0]
    assert got_item["candidates"] == want_item["candidates"]
    assert got_item["references"] == want_item["references"]
    assert got_item["layers"] == want_item["layers"]
    shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(got_item["image"].split(",", 1)[1]))), np.float64)
    pixels = x[0].numpy() * np.array(IMAGENET_STD)[:, None, None] + np.array(IMAGENET_MEAN)[:, None, None]
    assert np.abs(shown / 255.0 - np.clip(pixels, 0, 1).transpose(1, 2, 0)).max() <= 1 / 255 + 1e-6


def test_why_line_gives_the_diagnosis_with_the_models_linear_head(tmp_path, user_module, capsys):
    """The console's and the page's "why" is Explanation.diagnose with the last nn.Linear as the
    classifier: its weight cosines are the cosines of the head's rows, computed here by hand."""
    import importlib

    import finercam
    from finercam.apps.inputs import default_transform

    code = main([str(DATA / PHOTOS[0]), "--model", f"{user_module}:build", "--layer", "1",
                 "--out", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert code == 0
    why = next(line for line in out.splitlines() if line.startswith("  why: "))[len("  why: "):]
    net = importlib.import_module(user_module).build()
    exp = finercam.FinerCAM(net, "1")(default_transform()(read_image(DATA / PHOTOS[0]))[None])
    assert why == exp.diagnose(net[4]).summary(0)
    w = net[4].weight.detach().double().numpy()
    c, refs = int(exp.targets[0]), [int(r) for r in exp.references[0]]
    cosines = [w[c] @ w[r] / np.linalg.norm(w[c]) / np.linalg.norm(w[r]) for r in refs]
    assert "weight cosine " + ", ".join(f"{v:.2f}" for v in cosines) in why
    assert f"{why}." in (tmp_path / "o" / "index.html").read_text().replace("&#x27;", "'")
