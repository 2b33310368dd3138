"""The interactive view in a real browser: the page's recombination against Explanation.recombine.

Every state is applied through ``window.finercam.set`` (and once through the real controls); the
page's ``map()`` must equal ``exp.recombine(...).maps[i]`` (the C core) within 1e-4 for the
methods whose map is linear in the statistics (per-class raw maps in the page) and for Layer-CAM
and Grad-CAM++ (activations and gradients in the page), for every aggregation, one and three
references, gamma 0 / 0.6 / 2.5, one layer and two fused layers, forward and reverse.
One headless Chromium serves the whole module (tests/explorer_browser.py).
"""
import numpy as np
import pytest
import torch

import finercam
from explorer_browser import block_network, browser  # noqa: F401 (the fixture)
from models_for_tests import TinyResNet, TinyViT, images, seeded

NAMES = [f"bird {i}" for i in range(10)]
GAMMAS = (0.0, 0.6, 2.5)
AGGREGATES = ("mean", "max", "mean_after_relu")
TOL = 1e-4


def _explain(model, layer, method, **kw):
    torch.manual_seed(0)
    net = seeded(model)
    x = images(2)
    return finercam.FinerCAM(net, layer, method=method, **kw)(x), x


def _open(browser, page_html):
    page = browser.new_page()
    errors, requests = [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    block_network(page, requests)
    page.set_content(page_html)
    page.wait_for_function("() => window.finercam && window.finercam.state() !== null")
    return page, errors, requests


def _page_map(page):
    m = page.evaluate("() => window.finercam.map()")
    return np.asarray(m["data"], np.float64).reshape(m["height"], m["width"])


def _expected(exp, image, refs, **kw):
    # recombine takes one list per sample, all of one length: the others' first stored classes
    all_refs = [[int(c) for c in row[1:1 + len(refs)]] for row in exp.candidates]
    all_refs[image] = refs
    return exp.recombine(references=all_refs, **kw).maps[image]


def _sweep(page, exp, image, reverse=False):
    """Every gamma x aggregation x (one, three) references of one image; returns the maps seen."""
    stored = [int(c) for c in exp.candidates[image, 1:]]
    seen = []
    for refs in (stored[2:3], stored[:3]):
        for gamma in GAMMAS:
            for agg in AGGREGATES:
                state = {"image": image, "gamma": gamma, "references": refs, "aggregate": agg,
                         "reverse": reverse, "base": False}
                page.evaluate("s => window.finercam.set(s)", state)
                got = _page_map(page)
                want = _expected(exp, image, refs, gamma=gamma, aggregate=agg, reverse=reverse)
                np.testing.assert_allclose(got, want, rtol=0, atol=TOL, err_msg=str(state))
                seen.append(want)
    return seen


CASES = [  # (model, target layer(s), method): every embedding kind and both layer layouts
    (TinyResNet, "layer2", "gradcam"),
    (TinyResNet, "layer2", "layercam"),
    (TinyResNet, "layer2", "gradcam++"),
    (TinyViT, "blocks.1", "scorecam"),
    (TinyResNet, "layer2", "hirescam"),
    (TinyResNet, ["layer1", "layer2"], "xgradcam"),
    (TinyResNet, "layer2", "cam"),
]


@pytest.mark.parametrize("model,layer,method", CASES, ids=[c[2] for c in CASES])
def test_page_map_equals_recombine(browser, model, layer, method):
    exp, x = _explain(model, layer, method)
    page, errors, requests = _open(browser, exp.to_html(images=x, class_names=NAMES))
    try:
        seen = _sweep(page, exp, image=1)
        # not a vacuous comparison: the maps are non-trivial and change with the state
        assert max(float(m.max()) for m in seen) > 0.99
        assert np.ptp(np.stack(seen), axis=0).max() > 0.1
        page.evaluate("() => window.finercam.set({image: 0, base: true})")
        np.testing.assert_allclose(_page_map(page), exp.baseline().maps[0], rtol=0, atol=TOL)
        assert errors == [] and requests == []
    finally:
        page.close()


def test_reverse_and_second_image(browser):
    exp, x = _explain(TinyResNet, "layer2", "gradcam", num_references=2)
    page, errors, _ = _open(browser, exp.to_html(images=x))
    try:
        _sweep(page, exp, image=0, reverse=True)
        assert errors == []
    finally:
        page.close()


def test_initial_state_is_the_explanations(browser):
    exp, x = _explain(TinyResNet, "layer2", "gradcam", gamma=1.3, aggregate="max")
    page, _, _ = _open(browser, exp.to_html(images=x, class_names=NAMES))
    try:
        st = page.evaluate("() => window.finercam.state()")
        assert (st["image"], st["gamma"], st["aggregate"], st["base"]) == (0, 1.3, "max", False)
        assert st["references"] == exp.references[0].tolist() and st["target"] == int(exp.targets[0])
        np.testing.assert_allclose(_page_map(page), exp.maps[0], rtol=0, atol=TOL)
        # the stored classes are the toggles, labelled with their names
        labels = page.locator(".fc-chip").all_inner_texts()
        assert [t.strip() for t in labels] == [NAMES[c] for c in exp.candidates[0, 1:]]
        # under the map: why it moved as it did (Explanation.diagnose at the loaded settings)
        for image in (0, 1):
            page.evaluate("i => window.finercam.set({image: i})", image)
            why = page.locator(".fc-why").inner_text()
            assert why.endswith(exp.diagnose().summary(image, NAMES)), why
    finally:
        page.close()


def test_real_controls(browser):
    """Click a reference toggle, drag the gamma slider, pick an aggregation, tick base method."""
    exp, x = _explain(TinyResNet, "layer2", "gradcam")
    page, errors, _ = _open(browser, exp.to_html(images=x, class_names=NAMES))
    try:
        refs = exp.references[0].tolist()
        extra = int(exp.candidates[0, 5])                     # a stored class not among the references
        page.click(f"#fc-ref-{extra}")
        page.click(f"#fc-ref-{refs[0]}")                      # and drop the first reference
        page.locator("#fc-gamma").fill("2.5")                 # a range input: sets value, fires input
        page.click("#fc-agg-mean_after_relu")
        want_refs = refs[1:] + [extra]
        st = page.evaluate("() => window.finercam.state()")
        assert st["references"] == want_refs and st["gamma"] == 2.5 and st["aggregate"] == "mean_after_relu"
        np.testing.assert_allclose(_page_map(page), _expected(exp, 0, want_refs, gamma=2.5, aggregate="mean_after_relu"),
                                   rtol=0, atol=TOL)
        assert page.locator(".fc-caption").inner_text().startswith(NAMES[int(exp.targets[0])])
        page.click("#fc-base")
        np.testing.assert_allclose(_page_map(page), exp.baseline().maps[0], rtol=0, atol=TOL)
        # the last reference cannot be removed from the page
        for r in want_refs:
            page.click(f"#fc-ref-{r}")
        assert len(page.evaluate("() => window.finercam.state()")["references"]) == 1
        assert "at least one" in page.locator(".fc-message").inner_text()
        assert errors == []
    finally:
        page.close()


def test_bad_states_are_refused(browser):
    exp, x = _explain(TinyResNet, "layer2", "gradcam")
    page, _, _ = _open(browser, exp.to_html())
    try:
        before = page.evaluate("() => window.finercam.state()")
        target = int(exp.targets[0])
        for bad, words in (({"references": [target]}, "not stored"), ({"gamma": -1}, "gamma"),
                           ({"aggregate": "median"}, "aggregate"), ({"image": 7}, "image")):
            msg = page.evaluate("s => { try { window.finercam.set(s); return ''; } catch (e) { return e.message; } }", bad)
            assert words in msg
        assert page.evaluate("() => window.finercam.state()") == before
    finally:
        page.close()


def test_pgc_view_shows_its_fixed_maps(browser):
    exp, x = _explain(TinyResNet, "layer2", "gradcam", objective="pgc")
    page, _, _ = _open(browser, exp.to_html(images=x))
    try:
        np.testing.assert_allclose(_page_map(page), exp.maps[0], rtol=0, atol=TOL)
        page.evaluate("() => window.finercam.set({image: 1, base: true})")
        np.testing.assert_allclose(_page_map(page), exp.baseline().maps[1], rtol=0, atol=TOL)
        msg = page.evaluate("() => { try { window.finercam.set({gamma: 2}); return ''; } catch (e) { return e.message; } }")
        assert "pgc" in msg
        assert page.locator("#fc-gamma").is_disabled()
    finally:
        page.close()


def test_file_has_no_network_and_works_from_disk(browser, tmp_path):
    exp, x = _explain(TinyResNet, "layer2", "layercam")
    path = tmp_path / "view.html"
    text = exp.to_html(path, images=x)
    assert path.read_text(encoding="utf-8") == text
    assert "http://" not in text and "https://" not in text and "<link" not in text
    page = browser.new_page()
    requests = []
    block_network(page, requests)
    try:
        page.goto(path.as_uri())
        np.testing.assert_allclose(_page_map(page), exp.maps[0], rtol=0, atol=TOL)
        assert requests == []
    finally:
        page.close()


def test_jupyter_repr_is_a_working_frame(browser):
    exp, x = _explain(TinyResNet, "layer2", "gradcam")
    frame_html = exp._repr_html_()
    assert frame_html.startswith("<iframe srcdoc=")
    page = browser.new_page()
    try:
        page.set_content(frame_html)
        frame = page.frames[1]
        frame.wait_for_function("() => window.finercam && window.finercam.state() !== null")
        m = frame.evaluate("() => window.finercam.map()")
        np.testing.assert_allclose(np.reshape(m["data"], (m["height"], m["width"])), exp.maps[0], rtol=0, atol=TOL)
    finally:
        page.close()


def test_python_side_checks_its_arguments():
    exp, x = _explain(TinyResNet, "layer2", "gradcam")
    with pytest.raises(ValueError, match="images"):
        exp.to_html(images=x[:1])
    with pytest.raises(TypeError, match="class_names"):
        exp.to_html(class_names=42)


def test_browser_kernels_equal_the_numpy_twins(browser):
    """The page's resize and min-max against finercam._twins (float64 NumPy): up and down,
    odd sizes, a constant map (-> zeros), a map with NaN (-> all NaN)."""
    from finercam import _twins

    exp, _ = _explain(TinyResNet, "layer2", "gradcam")
    page, _, _ = _open(browser, exp.to_html())
    rng = np.random.default_rng(3)
    js = """([m, h, w, H, W]) => {
      const f = window.finercam._internals, out = new Float64Array(H * W);
      f.resize(Float64Array.from(m, v => v === null ? NaN : v), h, w, H, W, {rows: f.axis(h, H), cols: f.axis(w, W)}, out);
      const r = Array.from(out).map(v => Number.isNaN(v) ? null : v);
      return [r, Array.from(f.minmax(out)).map(v => Number.isNaN(v) ? null : v)];
    }"""
    try:
        for (h, w), (H, W) in [((7, 7), (224, 224)), ((5, 3), (13, 17)), ((6, 9), (4, 2)), ((1, 4), (3, 8))]:
            for kind in ("random", "constant", "nan"):
                m = rng.normal(size=(h, w))
                if kind == "constant":
                    m[:] = 0.25
                if kind == "nan":
                    m[h // 2, w // 2] = np.nan
                resized, normed = page.evaluate(js, [[None if np.isnan(v) else float(v) for v in m.ravel()], h, w, H, W])
                want = _twins._resize64(m[None], (H, W), False)[0]
                got = np.array([np.nan if v is None else v for v in resized]).reshape(H, W)
                np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
                got_n = np.array([np.nan if v is None else v for v in normed], np.float64).reshape(H, W)
                np.testing.assert_allclose(got_n, _twins._minmax64(want[None], 1e-8)[0], rtol=0, atol=1e-12)
    finally:
        page.close()


def test_all_zero_map_stays_zero(browser):
    """Score-CAM of this tiny net is non-positive everywhere: after the ReLU an all-zero map,
    which min-max leaves at zeros (not a spike where rounding left a crumb)."""
    exp, x = _explain(TinyResNet, "layer2", "scorecam")
    assert float(exp.maps.max()) == 0.0
    page, _, _ = _open(browser, exp.to_html(images=x))
    try:
        for state in ({"gamma": 0.0}, {"gamma": 2.5, "aggregate": "max"}, {"base": True}):
            page.evaluate("s => window.finercam.set(s)", state)
            assert float(np.abs(_page_map(page)).max()) == 0.0
    finally:
        page.close()


@pytest.mark.parametrize("method", ["gradcam++", "hirescam"])
def test_random_states(browser, method):
    """Seeded random states: any gamma in [0, 3], any non-empty subset of the stored classes in
    any order, any aggregation, either direction, either image."""
    exp, x = _explain(TinyResNet, "layer2", method)
    page, errors, _ = _open(browser, exp.to_html(images=x))
    rng = np.random.default_rng(11)
    try:
        for _ in range(25):
            image = int(rng.integers(2))
            stored = exp.candidates[image, 1:]
            refs = [int(c) for c in rng.permutation(stored)[: int(rng.integers(1, len(stored) + 1))]]
            gamma = float(np.round(rng.uniform(0, 3), 3))
            agg, reverse = str(rng.choice(AGGREGATES)), bool(rng.integers(2))
            page.evaluate("s => window.finercam.set(s)", {"image": image, "gamma": gamma, "references": refs,
                                                          "aggregate": agg, "reverse": reverse, "base": False})
            want = _expected(exp, image, refs, gamma=gamma, aggregate=agg, reverse=reverse)
            np.testing.assert_allclose(_page_map(page), want, rtol=0, atol=TOL, err_msg=f"{image} {refs} {gamma} {agg} {reverse}")
        assert errors == []
    finally:
        page.close()
