"""The explorer page in headless Chromium: any target/reference pair among the stored classes
against FinerCAM called with those targets, each layer and their fusion against FinerCAM on that
layer, the URL fragment round trip, the PNG download against ``viz.overlay``, keyboard operation
of every control, the Pearson r against ``finercam.diagnose.map_correlation``, a nearly flat
Score-CAM map, and the page at 1000 px.
"""
import io
import re

import numpy as np
import pytest
import torch
from explorer_browser import launch
from models_for_tests import TinyResNet, TinyViT, images, seeded
from PIL import Image
from torch import nn

import finercam
from finercam import _twins as _reference
from finercam import viz
from finercam.diagnose import map_correlation
from finercam.explorer import COLORMAPS, asset, comparison_words

pytestmark = pytest.mark.browser
NAMES = [f"bird {i}" for i in range(10)]
TOL = 1e-4


@pytest.fixture(scope="module")
def chromium():
    pw, browser = launch()
    yield browser
    browser.close()
    pw.stop()


def _open(chromium, html, url=None, viewport=None):
    page = chromium.new_page(viewport=viewport, accept_downloads=True)
    errors: list = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    if url is None:
        page.set_content(html)
    else:
        page.goto(url)
    page.wait_for_function("() => window.finercam && window.finercam.state() !== null")
    return page, errors


def _page_map(page):
    m = page.evaluate("() => window.finercam.map()")
    return np.asarray(m["data"], np.float64).reshape(m["height"], m["width"])


def _explain(method, layer="layer2", model=TinyResNet, **kw):
    torch.manual_seed(0)
    net = seeded(model)
    x = images(2)
    return net, x, finercam.FinerCAM(net, layer, method=method, candidates=10, **kw)(x)   # per-class: the page


PAIR_METHODS = ["gradcam", "scorecam", "layercam", "gradcam++", "hirescam", "xgradcam", "cam"]


@pytest.mark.parametrize("method", PAIR_METHODS)
def test_any_pair_equals_finercam_with_those_targets(chromium, method):
    """Target: a stored class that is not the explanation's; references: two others, one of them
    the original target. The page against a new FinerCAM call with targets= and references=."""
    model = TinyViT if method == "scorecam" else TinyResNet
    layer = "blocks.1" if method == "scorecam" else "layer2"
    net, x, exp = _explain(method, layer, model)
    page, errors = _open(chromium, exp.to_html(images=x, class_names=NAMES))
    try:
        for image in (0, 1):
            cand = [int(c) for c in exp.candidates[image]]
            target, refs = cand[2], [cand[0], cand[4]]
            for gamma, agg in ((0.6, "mean"), (1.5, "max"), (1.0, "mean_after_relu")):
                page.evaluate("s => window.finercam.set(s)", {"image": image, "target": target, "references": refs,
                                                              "gamma": gamma, "aggregate": agg, "base": False})
                cam = finercam.FinerCAM(net, layer, method=method, gamma=gamma, aggregate=agg)
                targets = [int(t) for t in exp.targets]
                all_refs = [[int(c) for c in row[1:3]] for row in exp.candidates]
                targets[image], all_refs[image] = target, refs
                want = cam(x, targets=targets, references=all_refs).maps[image]
                np.testing.assert_allclose(_page_map(page), want, rtol=0, atol=TOL, err_msg=f"{image} {gamma} {agg}")
                state = page.evaluate("() => window.finercam.state()")
                assert state["words"] == comparison_words(NAMES[target], [NAMES[r] for r in refs])
                assert page.locator(".fc-caption").inner_text() == state["words"]
            # its base map: FinerCAM's gamma = 0 map of that target
            page.evaluate("() => window.finercam.set({base: true})")
            np.testing.assert_allclose(_page_map(page), cam(x, targets=targets, references=all_refs).baseline().maps[image],
                                       rtol=0, atol=TOL)
            page.evaluate("() => window.finercam.set({base: false})")
        assert errors == []
    finally:
        page.close()


def test_picking_a_target_in_the_list_swaps_it_with_the_old_one(chromium):
    net, x, exp = _explain("gradcam")
    page, errors = _open(chromium, exp.to_html(images=x, class_names=NAMES))
    try:
        old, refs = int(exp.targets[0]), [int(r) for r in exp.references[0]]
        page.click(f"#fc-target-{refs[1]}")
        state = page.evaluate("() => window.finercam.state()")
        want_refs = [refs[0], old] + refs[2:]
        assert state["target"] == refs[1] and state["references"] == want_refs
        want = finercam.FinerCAM(net, "layer2")(x, targets=[refs[1], int(exp.targets[1])],
                                               references=[want_refs, exp.references[1].tolist()]).maps[0]
        np.testing.assert_allclose(_page_map(page), want, rtol=0, atol=TOL)
        # the target's own box cannot be a reference; the caption says what is compared
        assert page.locator(f"#fc-ref-{refs[1]}").is_disabled()
        assert page.locator(".fc-caption").inner_text() == f"{NAMES[refs[1]]}, not {NAMES[refs[0]]}, {NAMES[old]} or {NAMES[refs[2]]}"
        page.click("#fc-reverse")
        assert page.locator(".fc-caption").inner_text() == f"{NAMES[refs[0]]}, {NAMES[old]} or {NAMES[refs[2]]}, not {NAMES[refs[1]]}"
        assert errors == []
    finally:
        page.close()


def test_layer_switch_equals_finercam_on_that_layer(chromium):
    net, x, exp = _explain("gradcam", ["layer1", "layer2"])
    page, errors = _open(chromium, exp.to_html(images=x, class_names=NAMES))
    try:
        assert page.evaluate("() => window.finercam.state().layer") == "fused"
        np.testing.assert_allclose(_page_map(page), exp.maps[0], rtol=0, atol=TOL)
        labels = page.locator(".fc-radios[aria-label=layer] label").all_inner_texts()
        assert [t.strip() for t in labels] == ["layer1", "layer2", "fusion of all"]
        refs = exp.references.tolist()
        for i, name in enumerate(["layer1", "layer2"]):
            page.click(f"#fc-layer-{i}")                       # the real control
            assert page.evaluate("() => window.finercam.state().layer") == name
            alone = finercam.FinerCAM(net, name, candidates=10)(x, targets=exp.targets, references=refs)
            np.testing.assert_allclose(_page_map(page), alone.maps[0], rtol=0, atol=TOL)
            page.evaluate("() => window.finercam.set({gamma: 2.0, aggregate: 'max'})")
            np.testing.assert_allclose(_page_map(page), alone.recombine(gamma=2.0, aggregate="max").maps[0],
                                       rtol=0, atol=TOL)
            page.evaluate("() => window.finercam.set({gamma: 0.6, aggregate: 'mean'})")
        page.click("#fc-layer-fused")
        np.testing.assert_allclose(_page_map(page), exp.maps[0], rtol=0, atol=TOL)
        assert "fusion of layer1 + layer2" in page.locator(".fc-formula").inner_text()
        assert errors == []
    finally:
        page.close()
    # the first layer shown can be chosen, and a name that is not a layer is refused
    page, _ = _open(chromium, exp.to_html(layer="layer1"))
    try:
        assert page.evaluate("() => window.finercam.state().layer") == "layer1"
    finally:
        page.close()
    with pytest.raises(ValueError, match="layer must be one of"):
        exp.to_html(layer="layer3")


def test_url_fragment_round_trip(chromium, tmp_path):
    net, x, exp = _explain("layercam", ["layer1", "layer2"])
    path = tmp_path / "view.html"
    exp.to_html(path, images=x, class_names=NAMES)
    page, errors = _open(chromium, None, url=path.as_uri())
    cand = [int(c) for c in exp.candidates[1]]
    state = {"image": 1, "target": cand[3], "references": [cand[1], cand[5]], "gamma": 1.25, "aggregate": "max",
             "layer": "layer1", "cmap": "cividis", "opacity": 0.7, "reverse": True, "base": False}
    try:
        page.evaluate("s => window.finercam.set(s)", state)
        url, want_map = page.url, _page_map(page)
        want_state = page.evaluate("() => window.finercam.state()")
        assert "#" in url and "cmap=cividis" in url and "layer=layer1" in url
    finally:
        page.close()
    again, errors2 = _open(chromium, None, url=url)             # a fresh tab opens the link
    try:
        assert again.evaluate("() => window.finercam.state()") == want_state
        np.testing.assert_allclose(_page_map(again), want_map, rtol=0, atol=0)
        assert again.locator("#fc-cmap").input_value() == "cividis"
        # an edited fragment (hashchange) is applied in place
        again.evaluate("() => { window.location.hash = 'gamma=0.3&cmap=viridis'; }")
        again.wait_for_function("() => window.finercam.state().cmap === 'viridis'")
        assert again.evaluate("() => window.finercam.state()")["gamma"] == 0.3
        assert errors == [] and errors2 == []
    finally:
        again.close()
    # a link the page cannot honour says so and keeps the explanation's own view
    bad, _ = _open(chromium, None, url=path.as_uri() + "#target=999")
    try:
        assert "could not be restored" in bad.locator(".fc-message").inner_text()
        assert bad.evaluate("() => window.finercam.state().target") == int(exp.targets[0])
    finally:
        bad.close()


def _download(page):
    with page.expect_download() as info:
        page.click("#fc-download")
    d = info.value
    return d.suggested_filename, np.asarray(Image.open(io.BytesIO(open(d.path(), "rb").read())).convert("RGB"))


@pytest.mark.parametrize("cmap", ["jet", "cividis"])
def test_png_download_is_the_overlay_at_the_photos_size(chromium, cmap):
    net, x, exp = _explain("gradcam")
    photo = (x.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)           # the input's own size
    big = [np.asarray(Image.fromarray(p).resize((70, 50), Image.BICUBIC)) for p in photo]  # a larger photo
    for shown, exact in ((photo, True), (big, False)):
        page, errors = _open(chromium, exp.to_html(images=list(shown), class_names=NAMES, cmap=cmap))
        try:
            page.evaluate("() => window.finercam.set({image: 1, opacity: 0.6, gamma: 1.2})")
            name, png = _download(page)
            assert name.startswith(f"finercam-bird-{int(exp.targets[1])}-not-") and name.endswith(".png")
            assert png.shape == shown[1].shape                                  # the photo's size
            want = viz.to_uint8(viz.overlay(shown[1], _page_map(page), cmap=cmap, alpha=0.6))
            diff = np.abs(png.astype(int) - want.astype(int))
            if exact:   # the same map, coloured and blended: rounding only
                assert diff.max() <= 1
            else:       # resized in the page as in viz (both half-pixel bilinear): a rare colour step
                assert (diff <= 1).mean() > 0.99 and diff.max() <= 12
            assert np.ptp(png) > 100                                            # not a blank picture
            assert errors == []
        finally:
            page.close()


def _tab_order(page, n=40):
    seen = []
    page.locator("#fc-gamma").focus()
    for _ in range(n):
        seen.append(page.evaluate("() => document.activeElement.id || document.activeElement.className"))
        page.keyboard.press("Tab")
    return seen


def test_every_control_works_from_the_keyboard(chromium):
    net, x, exp = _explain("gradcam", ["layer1", "layer2"])
    page, errors = _open(chromium, exp.to_html(images=x, class_names=NAMES))
    try:
        order = _tab_order(page)
        cand = [int(c) for c in exp.candidates[0]]
        for control in ["fc-gamma", "fc-target-" + str(cand[0]), "fc-ref-" + str(cand[1]), "fc-layer-fused",
                        "fc-agg-mean", "fc-base", "fc-reverse", "fc-cmap", "fc-alpha", "fc-download"]:
            assert control in order, (control, order)
        page.locator("#fc-gamma").focus()
        for _ in range(5):
            page.keyboard.press("ArrowRight")
        assert page.evaluate("() => window.finercam.state().gamma") == pytest.approx(0.65)
        page.locator(f"#fc-target-{cand[0]}").focus()
        page.keyboard.press("ArrowDown")                           # the next stored class is the target
        st = page.evaluate("() => window.finercam.state()")
        assert st["target"] == cand[1] and cand[0] in st["references"]
        assert page.evaluate("() => document.activeElement.id") == f"fc-target-{cand[1]}"   # focus kept
        extra = [c for c in cand if c != st["target"] and c not in st["references"]][0]
        page.locator(f"#fc-ref-{extra}").focus()
        page.keyboard.press("Space")
        assert extra in page.evaluate("() => window.finercam.state().references")
        page.locator("#fc-layer-fused").focus()
        page.keyboard.press("ArrowLeft")
        assert page.evaluate("() => window.finercam.state().layer") == "layer2"
        page.locator("#fc-agg-mean").focus()
        page.keyboard.press("ArrowRight")
        assert page.evaluate("() => window.finercam.state().aggregate") == "max"
        page.locator("#fc-base").focus()
        page.keyboard.press("Space")
        assert page.evaluate("() => window.finercam.state().base") is True
        page.keyboard.press("Space")
        page.locator("#fc-cmap").focus()
        page.keyboard.press("ArrowDown")
        assert page.evaluate("() => window.finercam.state().cmap") == "viridis"
        page.locator("#fc-alpha").focus()
        page.keyboard.press("ArrowLeft")
        assert page.evaluate("() => window.finercam.state().opacity") == pytest.approx(0.45)
        st = page.evaluate("() => window.finercam.state()")
        want = finercam.FinerCAM(net, "layer2", gamma=0.65, aggregate="max")(
            x, targets=[st["target"], int(exp.targets[1])], references=[st["references"], exp.candidates[1, 1:1 + len(st["references"])].tolist()])
        np.testing.assert_allclose(_page_map(page), want.maps[0], rtol=0, atol=TOL)
        page.locator("#fc-download").focus()
        with page.expect_download() as info:
            page.keyboard.press("Enter")
        assert info.value.suggested_filename.endswith(".png")
        assert errors == []
    finally:
        page.close()


def test_correlation_is_diagnoses_on_the_input_grid(chromium):
    net, x, exp = _explain("gradcam", gamma=1.0)
    page, errors = _open(chromium, exp.to_html(images=x, class_names=NAMES))
    try:
        r = map_correlation(exp.maps, exp.baseline().maps)
        for image in (0, 1):
            st = page.evaluate("i => window.finercam.set({image: i})", image)
            assert st["correlation"] == pytest.approx(float(r[image]), abs=1e-6)
            text = page.locator(".fc-corr").inner_text()
            assert f"r = {r[image]:.3f}" in text and "32 \u00d7 32 input grid" in text
            # the why line (Explanation.diagnose) gives the same number, rounded
            assert f"correlation with the base map {r[image]:.2f}" in page.locator(".fc-why").inner_text()
        assert errors == []
    finally:
        page.close()


def _near_flat_scorecam():
    """A CNN whose class-0 logit carries a bias of 30: Score-CAM's masked scores and its
    zero-input logit are nearly equal, their difference (the weights) small, and the map's raw
    values span about 0.006-0.013, nowhere zero."""
    torch.manual_seed(2)
    conv, head = nn.Conv2d(3, 32, 3, padding=1), nn.Linear(32, 6)
    with torch.no_grad():
        head.weight.mul_(0.05)
        head.bias.zero_()
        head.bias[0] = 30.0
        conv.bias.add_(0.3)
    net = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head).eval()
    return net, torch.rand(1, 3, 12, 12)


def _equations(exp, gamma):
    """Eq. 9 in float64 NumPy from the stored scores: the oracle for the Python side."""
    st = exp._store
    A = st.activations[0][0].astype(np.float64)
    scores, zero = st.stats[0][0].astype(np.float64), st.baselines[0][0].astype(np.float64)
    cand = list(st.candidates[0])
    c = np.zeros(len(cand))
    c[0] = 1.0
    for r in exp.references[0]:
        c[cand.index(r)] -= np.float32(gamma / exp.references.shape[1])
    raw = np.maximum(np.tensordot(c @ scores - zero[0], A, 1), 0.0)
    return _reference._minmax64(_reference._resize64(raw[None], st.input_size, False), 1e-8)[0]


def test_nearly_flat_scorecam_map_is_exact(chromium):
    net, x = _near_flat_scorecam()
    exp = finercam.FinerCAM(net, "0", method="scorecam", num_references=2)(x)
    raw = exp.raw_maps[0]
    assert 0.005 < raw.min() and raw.max() - raw.min() < 0.015          # nearly flat, nowhere zero
    np.testing.assert_allclose(exp.maps[0], _equations(exp, 0.6), rtol=0, atol=1e-5)  # Python: the equations
    # float32 per-class maps (the page's format before) would not do: their rounding is > 1e-4
    st = exp._store
    A, scores, zero = st.activations[0][0], st.stats[0][0], st.baselines[0][0]
    per_class = np.einsum("sk,khw->shw", scores.astype(np.float64), A.astype(np.float64)).astype(np.float32)
    c = np.zeros(len(scores))
    c[0] = 1.0
    for r in exp.references[0]:
        c[list(st.candidates[0]).index(r)] -= np.float32(0.3)
    signed = np.tensordot(c, per_class.astype(np.float64), 1) - float(zero[0]) * A.astype(np.float64).sum(0).astype(np.float32)
    rounded = finercam.kernels.postprocess(np.maximum(signed, 0).astype(np.float32)[None], st.input_size)[0]
    assert np.abs(rounded - exp.maps[0]).max() > 1e-4
    page, errors = _open(chromium, exp.to_html(images=x))
    try:
        for gamma in (0.0, 0.3, 0.6):
            page.evaluate("g => window.finercam.set({gamma: g})", gamma)
            np.testing.assert_allclose(_page_map(page), exp.recombine(gamma=gamma).maps[0], rtol=0, atol=TOL)
            np.testing.assert_allclose(_page_map(page), _equations(exp, gamma), rtol=0, atol=1e-5)
        page.evaluate("() => window.finercam.set({base: true})")
        np.testing.assert_allclose(_page_map(page), exp.baseline().maps[0], rtol=0, atol=TOL)
        assert errors == []
    finally:
        page.close()


def test_page_fits_1000_px(chromium, tmp_path):
    net, x, exp = _explain("gradcam", ["layer1", "layer2"])
    page, errors = _open(chromium, exp.to_html(images=x, class_names=NAMES), viewport={"width": 1000, "height": 900})
    try:
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 1000
        box = page.locator(".fc-controls").bounding_box()
        figs = page.locator(".fc-figs").bounding_box()
        assert box["x"] + box["width"] <= 1000 and figs["x"] + figs["width"] <= box["x"]   # side by side
        assert errors == []
    finally:
        page.close()


def test_colour_maps_are_matplotlibs():
    from matplotlib import colormaps

    js = asset("colormaps.js")
    for name in COLORMAPS:
        block = re.search(name + r": table\(\s*((?:\"[0-9a-f]+\"\s*\+?\s*)+)\)", js).group(1)
        lut = np.frombuffer(bytes.fromhex("".join(re.findall(r"\"([0-9a-f]+)\"", block))), np.uint8).reshape(256, 3)
        want = np.floor(colormaps[name](np.arange(256))[:, :3] * 255 + 0.5).astype(np.uint8)   # half up
        np.testing.assert_array_equal(lut, want, err_msg=name)


def test_words_in_the_page_equal_comparison_words(chromium):
    net, x, exp = _explain("gradcam")
    page, _ = _open(chromium, exp.to_html())
    try:
        for refs, reverse, base in ((["b"], False, False), (["b", "c"], False, False), (["b", "c", "d"], True, False),
                                    (["b"], False, True)):
            got = page.evaluate("a => window.finercam._internals.words(...a)", ["a", refs, reverse, base])
            assert got == comparison_words("a", refs, reverse=reverse, base=base)
    finally:
        page.close()
