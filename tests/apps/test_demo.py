"""`finercam demo --quick` (the CI mode): every figure for the three models, numbers checked."""
import json
import os
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

from locations import DATA, ROOT  # noqa: E402

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pytest
import torch
from PIL import Image

from finercam import _twins
from finercam.world import datasets, models

MODEL_KEYS = ("cnn", "vit", "probe")
FIGURES = ([f"{m}-fig{k}" for m in MODEL_KEYS for k in (4, 5, 7, 8)] + ["fig1-similarity"]
           + ["zeroshot-prompts", "sanity"])


def _methods(key):
    """The base methods a model is explained with: the probe has no Score-CAM (1,280 channels)."""
    return ("gradcam", "layercam") if key == "probe" else ("gradcam", "layercam", "scorecam")


def _test_images(meta, key):
    """The test images the demo gave model ``key``, rendered at its size (the probe: 224)."""
    counts = meta["models"][key]
    return datasets.generate(counts["images"], seed=meta["seed"], split="test", size=counts["size"])


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-m", "finercam", "demo", "--quick", "--out", str(out)],
                       capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r


@pytest.mark.slow
@pytest.mark.subprocess
def test_prints_the_report_path_and_writes_every_file(quick):
    out, r = quick
    assert r.stdout.strip().splitlines()[-1] == f"report: {(out / 'index.html').resolve()}"
    html = (out / "index.html").read_text()
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert sorted(srcs) == sorted(f"{f}.png" for f in FIGURES)
    assert "http" not in " ".join(re.findall(r'(?:src|href)="([^"]+)"', html))
    assert html.count("<table>") == 3 * 4 + 2  # per model: two settings, differences, parts; zero-shot: 2


@pytest.mark.slow
@pytest.mark.subprocess
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


@pytest.mark.slow
@pytest.mark.subprocess
def test_accuracy_and_part_shares_against_direct_computation(quick):
    out, _ = quick
    res = json.loads((out / "results.json").read_text())
    meta = res["meta"]
    assert meta["models"]["probe"] == {"images": 16, "score_images": 0, "deletion_images": 8,
                                       "size": 224}
    for key in MODEL_KEYS:
        batch = _test_images(meta, key)
        assert batch.labels.tolist() == list(range(16)) * (len(batch.labels) // 16)
        with torch.no_grad():
            pred = models.load(key)(torch.from_numpy(batch.images)).argmax(1).numpy()
        assert res["meta"]["accuracy"][key] == pytest.approx(np.mean(pred == batch.labels))
        for kind, shares in res["scores"][key]["gradcam"]["parts"].items():
            # Visible part masks are disjoint and the background is the rest: shares sum to 1.
            assert sum(shares.values()) == pytest.approx(1.0, abs=1e-6), kind
    assert sorted(res["scores"]["probe"]) == ["gradcam", "layercam"]
    for key in MODEL_KEYS:
        for method in _methods(key):
            for setting in ("nearest", "aggregated"):
                for kind in ("base", "finer"):
                    row = res["scores"][key][method][setting][kind]
                    for col in ("energy", "disc_energy", "disc_pointing"):
                        assert 0.0 <= row[col] <= 1.0
                    for col in ("rd@0.05", "rd@0.1"):
                        # a drop of p_c minus a drop of p_d, each in [-1, 1]: the target can lose
                        # almost all its probability while the reference gains, so RD exceeds 1
                        assert -2.0 <= row[col] <= 2.0


def _box_energy(maps, boxes):
    """Mean share of each map's energy inside its (x0, y0, x1, y1) box, in float64."""
    x0, y0, x1, y1 = boxes.T
    return float(np.mean([m[y0[i]:y1[i], x0[i]:x1[i]].sum(dtype=np.float64) / m.sum(dtype=np.float64)
                          for i, m in enumerate(maps)]))


@pytest.mark.slow
@pytest.mark.subprocess
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
    maps = _twins.postprocess(raw, batch.images.shape[-2:])
    got = res["scores"]["cnn"]["gradcam"]["nearest"]["base"]["energy"]
    assert got == pytest.approx(_box_energy(maps, batch.boxes), abs=2e-4)


@pytest.mark.slow
@pytest.mark.subprocess
def test_probe_gradcam_box_energy_equals_gated_cam(quick):
    """The probe's head is pool(_bn1) -> linear (the original probe: pool = average of relu6), so
    Grad-CAM's channel weight, the spatial mean of the gradient of y_c at _bn1, has a closed form
    (up to 1 / HW): average of relu6: w_ck times the unclipped share of channel k (the gradient is
    w_ck / HW where 0 < A_k < 6); average: w_ck; the 2 x 2 grid: the sum of channel k's four cell
    weights (each cell's gradient, w / |cell| on its |cell| positions, sums to w); average and max:
    w_ck + w_c,C+k. The map relu(sum_k alpha_k A_k) follows from the activations alone."""
    out, _ = quick
    res = json.loads((out / "results.json").read_text())
    batch = _test_images(res["meta"], "probe")
    net = models.load("probe")
    feats: dict = {}
    h = net.get_submodule("_bn1").register_forward_hook(lambda m, i, o: feats.update(a=o.detach()))
    try:
        with torch.no_grad():
            net(torch.from_numpy(batch.images))
    finally:
        h.remove()
    a = feats["a"].double()                                            # (N, 1280, 7, 7)
    assert a.shape[-2:] == (7, 7)
    fc = net.get_submodule("_fc")
    assert isinstance(fc, torch.nn.Linear)
    w = fc.weight.detach().double()[torch.from_numpy(batch.labels)]  # (N, width)
    k = a.shape[1]
    pooling, activation = getattr(net, "pooling", "avg"), getattr(net, "activation", True)
    if pooling == "grid2":
        alpha = w.reshape(len(w), k, 4).sum(dim=2)
    elif pooling == "avgmax":
        alpha = w[:, :k] + w[:, k:]
    else:
        assert pooling == "avg"
        alpha = w * (((a > 0) & (a < 6)).double().mean(dim=(2, 3)) if activation else 1.0)
    raw = torch.relu(torch.einsum("nk,nkhw->nhw", alpha, a)).numpy()
    maps = _twins.postprocess(raw, batch.images.shape[-2:])
    got = res["scores"]["probe"]["gradcam"]["nearest"]["base"]["energy"]
    assert got == pytest.approx(_box_energy(maps, batch.boxes), abs=2e-4)


@pytest.mark.slow
@pytest.mark.subprocess
def test_bad_arguments_give_one_line():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    for extra in (["--images", "4"], ["--images", "x"], ["--score-images", "0"],
                  ["--probe-images", "17"], ["--probe-deletion-images", "0"]):
        r = subprocess.run([sys.executable, "-m", "finercam", "demo", "--quick", *extra],
                           capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 2
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "finercam demo: error:" in r.stderr


PHOTOS = ["blue_grosbeak.jpg", "dog_cat.jfif", "horses.jpg"]


@pytest.mark.slow
@pytest.mark.subprocess
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


@pytest.mark.slow
@pytest.mark.subprocess
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
    names = {"gradcam": "Grad-CAM", "layercam": "Layer-CAM", "scorecam": "Score-CAM"}
    for key, label in (("cnn", "CNN"), ("vit", "ViT"), ("probe", "Probe")):
        for method in _methods(key):
            name = names[method]
            d = res["scores"][key][method]["nearest"]["diff"]["energy"]
            entry = f"{label} {name} ({d['mean']:+.3f} \u00b1 {d['se']:.3f})"
            group = ("up" if d["mean"] > 2 * d["se"] else
                     "down" if d["mean"] < -2 * d["se"] else "same")
            assert entry in groups[group], (entry, group, finding)
    before_tables = html[:html.index("<table>")]
    for term in ("Del. \u2193", "RD@0.05, RD@0.1", "Loc.", "Disc. energy", "Part PG",
                 "empty maps"):
        assert f"<dt>{term}</dt>" in before_tables
    assert "so RD lies in [-2, 2]; it exceeds 1" in html
    assert html.count("<dl>") == 3   # before each model's tables
    assert "Probe Score-CAM" not in finding and "The Probe's Finer maps correlate" in finding
    # the probe's section says what it covers, in its text and in its tables' captions
    section = unescape(html[html.index("<h2>Probe (layer _bn1"):html.index("<h2>Classifier-weight")])
    assert "covers the first 16 test images, deletion curves the first 8" in section
    assert section.count("16 images rendered at 224 x 224 (Del. over the first 8; no Score-CAM: its "
                         "1,280 channels would cost") == 2
    tables = (out / "tables.md").read_text()
    assert "**Probe, single reference (T = 1, nearest logit)**, 16 test images rendered at 224 x 224" in tables
    assert "Score-CAM" not in tables[tables.index("**Probe, single"):].replace("no Score-CAM", "")


def test_overlays_get_a_colour_scale_and_empty_maps_say_so():
    from finercam import viz
    from finercam.apps.demo.figures import finish_overlays

    img = np.zeros((8, 8, 3))
    full, empty = np.linspace(0, 1, 64).reshape(8, 8), np.zeros((8, 8))
    fig = viz.panel_grid([[img, viz.overlay(img, full), viz.overlay(img, empty)]])
    finish_overlays(fig, [[None, full, empty]])
    texts = [[t.get_text() for t in ax.texts] for ax in fig.axes[:3]]
    assert texts == [[], [], ["empty map"]]
    bar = fig.axes[3]                              # the colour scale, 0 to 1
    assert bar.get_ylabel() == "map value (min-max per map)" and bar.get_ylim() == (0.0, 1.0)


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize("key", MODEL_KEYS)
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
    batch = _test_images(json.loads((out / "results.json").read_text())["meta"], key)
    net = models.load(key)
    exp = finercam.FinerCAM(net, net.default_target_layer, gamma=0.6, num_references=3, candidates=10)(
        torch.from_numpy(batch.images), targets=torch.from_numpy(batch.labels))
    every = [(item["candidates"], item["layers"]) for item in view_data(exp)["images"]]
    assert 1 <= len(data["images"]) <= 3
    for item in data["images"]:
        assert len(item["references"]) == 3
        # The page computed its images in one batch of three, the test in one of 16: equal up to
        # float32 rounding, which the probe's 1,280-channel convolutions make depend on the batch.
        assert any(c == item["candidates"] and _same_layers(layers, item["layers"])
                   for c, layers in every), item["candidates"]


def _same_layers(a, b) -> bool:
    """Two explorer views' per-image layers agree: the same fields, and each base64 float32
    array (a float64 one where the page sends it as ``hi`` + ``hi_lo``) equal up to a relative
    1e-4 of its largest magnitude."""
    import base64

    def decoded(layer, k):
        v = layer[k]
        if not isinstance(v, str):
            return None
        x = np.frombuffer(base64.b64decode(v), "<f4").astype(np.float64)
        lo = layer.get(k + "_lo")
        return x + np.frombuffer(base64.b64decode(lo), "<f4") if isinstance(lo, str) else x

    if len(a) != len(b):
        return False
    for la, lb in zip(a, b, strict=True):
        if sorted(la) != sorted(lb) or la["kind"] != lb["kind"]:
            return False
        for k in la:
            if k.endswith("_lo"):          # the low half of a float64 array, added to its high half
                continue
            x, y = (decoded(la, k), decoded(lb, k)) if k != "kind" else (None, None)
            if x is None:
                if la[k] != lb[k]:
                    return False
            elif x.shape != y.shape or not np.allclose(x, y, rtol=1e-4,
                                                       atol=1e-4 * float(np.abs(x).max(initial=1e-12))):
                return False
    return True
