"""`finercam demo --quick` (the CI mode): every figure for both models, numbers checked."""
import json
import os
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pytest
import torch
from PIL import Image

from finercam import _reference
from finercam.world import datasets, models

ROOT = Path(__file__).parent.parent
FIGURES = ([f"{m}-fig{k}" for m in ("cnn", "vit") for k in (4, 5, 7, 8)] + ["fig1-similarity"]
           + ["zeroshot-prompts"])


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-m", "finercam", "demo", "--quick", "--out", str(out)],
                       capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r


def test_prints_the_report_path_and_writes_every_file(quick):
    out, r = quick
    assert r.stdout.strip().splitlines()[-1] == f"report: {(out / 'index.html').resolve()}"
    html = (out / "index.html").read_text()
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert sorted(srcs) == sorted(f"{f}.png" for f in FIGURES)
    assert "http" not in " ".join(re.findall(r'(?:src|href)="([^"]+)"', html))
    assert html.count("<table>") == 2 * 4 + 2  # per model: two settings, differences, parts; zero-shot: 2


@pytest.mark.parametrize("name", FIGURES)
def test_figures_are_valid_pngs_with_content(quick, name):
    out, _ = quick
    with Image.open(out / f"{name}.png") as im:
        im.verify()
    with Image.open(out / f"{name}.png") as im:
        assert im.format == "PNG"
        px = np.asarray(im.convert("RGB"))
    assert px.shape[0] >= 200 and px.shape[1] >= 300
    assert px.std() > 20  # not blank
    colours = np.unique(px.reshape(-1, 3)[:: 7], axis=0)
    assert len(colours) > 200  # overlays and photographs, not a few flat boxes


def test_accuracy_and_part_shares_against_direct_computation(quick):
    out, _ = quick
    res = json.loads((out / "results.json").read_text())
    meta = res["meta"]
    batch = datasets.generate(meta["images"], seed=meta["seed"], split="test")
    x = torch.from_numpy(batch.images)
    for key in ("cnn", "vit"):
        with torch.no_grad():
            pred = models.load(key)(x).argmax(1).numpy()
        assert res["meta"]["accuracy"][key] == pytest.approx(np.mean(pred == batch.labels))
        for kind, shares in res["scores"][key]["gradcam"]["parts"].items():
            # Visible part masks are disjoint and the background is the rest: shares sum to 1.
            assert sum(shares.values()) == pytest.approx(1.0, abs=1e-6), kind
    for key in ("cnn", "vit"):
        for method in ("gradcam", "layercam", "scorecam"):
            for setting in ("nearest", "aggregated"):
                for kind in ("base", "finer"):
                    row = res["scores"][key][method][setting][kind]
                    for col in ("loc", "energy", "pointing"):
                        assert 0.0 <= row[col] <= 1.0
                    for col in ("rd@0.05", "rd@0.1"):
                        # a drop of p_c minus a drop of p_d, each in [-1, 1]: the target can lose
                        # almost all its probability while the reference gains, so RD exceeds 1
                        assert -2.0 <= row[col] <= 2.0


def test_cnn_gradcam_box_energy_equals_plain_cam(quick):
    """At the CNN's last block (global pool + linear) Grad-CAM is CAM: relu(sum_k w_ck A_k)."""
    out, _ = quick
    res = json.loads((out / "results.json").read_text())
    meta = res["meta"]
    batch = datasets.generate(meta["images"], seed=meta["seed"], split="test")
    net = models.load("cnn")
    feats = {}
    layer = dict(net.named_modules())[net.default_target_layer]
    h = layer.register_forward_hook(lambda m, i, o: feats.setdefault("a", o.detach()))
    try:
        with torch.no_grad():
            net(torch.from_numpy(batch.images))
    finally:
        h.remove()
    w = net.fc.weight.detach()[torch.from_numpy(batch.labels)]  # (N, K)
    raw = torch.relu(torch.einsum("nk,nkhw->nhw", w, feats["a"])).numpy()
    maps = _reference.postprocess(raw, batch.images.shape[-2:])
    x0, y0, x1, y1 = batch.boxes.T
    energy = []
    for i, m in enumerate(maps):
        inside = m[y0[i]:y1[i], x0[i]:x1[i]].sum(dtype=np.float64)
        energy.append(inside / m.sum(dtype=np.float64))
    got = res["scores"]["cnn"]["gradcam"]["nearest"]["base"]["loc"]
    assert got == pytest.approx(float(np.mean(energy)), abs=2e-4)


def test_bad_arguments_give_one_line():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    for extra in (["--images", "4"], ["--images", "x"], ["--score-images", "0"]):
        r = subprocess.run([sys.executable, "-m", "finercam", "demo", "--quick", *extra],
                           capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 2
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "finercam demo: error:" in r.stderr


PHOTOS = ["blue_grosbeak.jpg", "dog_cat.jfif", "horses.jpg"]
DATA = Path(__file__).parent / "data"


def test_embedded_cnn_by_default_through_the_cli(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    photos = [str(DATA / n) for n in PHOTOS]
    r = subprocess.run([sys.executable, "-m", "finercam", "explain", *photos, "--out",
                        str(tmp_path), "--method", "gradcam"], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    for n in PHOTOS:
        stem = Path(n).stem
        with Image.open(DATA / n) as raw:
            size = raw.size
        for kind in ("baseline", "finer"):
            with Image.open(tmp_path / f"{stem}_{kind}.png") as im:
                assert im.size == size
                assert np.asarray(im).std() > 5
    r = subprocess.run([sys.executable, "-m", "finercam", "explain", str(tmp_path / "none.jpg")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_the_page_reads_on_its_own(quick):
    """A first section with what Finer-CAM shows and the run's finding, computed from its own
    paired differences; every column defined before the tables; why RD can exceed 1."""
    out, _ = quick
    html = (out / "index.html").read_text()
    res = json.loads((out / "results.json").read_text())
    first = html.index("<h2>")
    assert html[first:].startswith("<h2>What Finer-CAM shows, and what this run found</h2>")
    finding = unescape(re.search(r'<p class="finding">(.*?)</p>', html).group(1))
    groups = {"up": finding[finding.index("into the bird's box for"):finding.index("; less for")],
              "down": finding[finding.index("; less for"):finding.index("; no difference")],
              "same": finding[finding.index("; no difference"):finding.index(" The CNN's")]}
    # the oracle: the verdict of every model x method, recomputed from results.json
    for key, label in (("cnn", "CNN"), ("vit", "ViT")):
        for method, name in (("gradcam", "Grad-CAM"), ("layercam", "Layer-CAM"),
                             ("scorecam", "Score-CAM")):
            d = res["scores"][key][method]["nearest"]["diff"]["loc"]
            entry = f"{label} {name} ({d['mean']:+.3f} \u00b1 {d['se']:.3f})"
            group = ("up" if d["mean"] > 2 * d["se"] else
                     "down" if d["mean"] < -2 * d["se"] else "same")
            assert entry in groups[group], (entry, group, finding)
    before_tables = html[:html.index("<table>")]
    for term in ("Del. \u2193", "RD@5%, RD@10%", "Loc. (box)", "Disc. energy", "Part PG",
                 "empty maps"):
        assert f"<dt>{term}</dt>" in before_tables
    assert "so RD lies in [-2, 2]; it exceeds 1" in html
    assert html.count("<dl>") == 2   # before each model's tables


def test_overlays_get_a_colour_scale_and_empty_maps_say_so():
    from finercam.apps import viz
    from finercam.apps.demo import _finish_overlays

    img = np.zeros((8, 8, 3))
    full, empty = np.linspace(0, 1, 64).reshape(8, 8), np.zeros((8, 8))
    fig = viz.panel_grid([[img, viz.overlay(img, full), viz.overlay(img, empty)]])
    _finish_overlays(fig, [[None, full, empty]])
    texts = [[t.get_text() for t in ax.texts] for ax in fig.axes[:3]]
    assert texts == [[], [], ["empty map"]]
    bar = fig.axes[3]                              # the colour scale, 0 to 1
    assert bar.get_ylabel() == "map value (min-max per map)" and bar.get_ylim() == (0.0, 1.0)


@pytest.mark.parametrize("key", ["cnn", "vit"])
def test_the_page_embeds_an_interactive_view_per_model(quick, key):
    """Each model's section embeds its explorer page (offline): bird names, three references, and
    per image the same stored classes and per-class raw maps as FinerCAM computes on that test
    image at the demo's settings (the page recombines the Finer maps from these)."""
    import finercam
    from finercam.explorer import view_data

    out, _ = quick
    assert f'<iframe src="{key}-explore.html"' in (out / "index.html").read_text()
    page = (out / f"{key}-explore.html").read_text()
    assert "http" not in " ".join(re.findall(r'(?:src|href)="([^"]+)"', page))
    data = json.loads(re.search(r'<script type="application/json" id="finercam-data">(.*?)</script>',
                                page, re.S).group(1))
    assert set(data["names"].values()) <= set(datasets.CLASS_NAMES) and data["names"]
    meta = json.loads((out / "results.json").read_text())["meta"]
    batch = datasets.generate(meta["images"], seed=meta["seed"], split="test")
    net = models.load(key)
    exp = finercam.FinerCAM(net, net.default_target_layer, gamma=0.6, num_references=3)(
        torch.from_numpy(batch.images), targets=torch.from_numpy(batch.labels))
    every = [(item["candidates"], item["layers"]) for item in view_data(exp)["images"]]
    assert 1 <= len(data["images"]) <= 3
    for item in data["images"]:
        assert len(item["references"]) == 3
        assert (item["candidates"], item["layers"]) in every
