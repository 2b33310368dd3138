"""``finercam explain`` with two ``--layer`` and ``--cmap``; one correlation in its console line,
its "why" line and the view; the app's layers, its pixel limit (413) and its top-5 entries as
targets (in Chromium). Oracles: FinerCAM called directly, ``finercam.diagnose.map_correlation``,
matplotlib's colour maps.
"""
import base64
import io
import json
import re
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
from locations import DATA
from PIL import Image

import finercam
from finercam.apps.app import ExplainService, builtin_models, make_server
from finercam.apps.explain import main
from finercam.apps.inputs import load_model
from finercam.diagnose import map_correlation
from finercam.images import read_image

PHOTO = DATA / "blue_grosbeak.jpg"
TOL = 1e-4


def _view_data(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="finercam-data">(.*?)</script>', page, re.S)
    assert found is not None
    return json.loads(found.group(1).replace("<\\/", "</"))


def test_explain_two_layers_cmap_and_one_correlation(tmp_path, capsys):
    out = tmp_path / "o"
    code = main([str(PHOTO), "--model", "cnn", "--layer", "block2", "--layer", "block3", "--html",
                 "--cmap", "cividis", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    data = _view_data((out / "blue_grosbeak.html").read_text())
    assert data["layers"] == ["block2", "block3"] and data["layer"] == "fused" and data["cmap"] == "cividis"
    # the same call, made here: the view's stored classes and the one correlation
    inputs = load_model("cnn")
    x = inputs.transform(read_image(PHOTO))[None]
    exp = finercam.FinerCAM(inputs.model, ["block2", "block3"], candidates=10)(x)
    assert data["images"][0]["candidates"] == exp.candidates[0].tolist()
    r = float(map_correlation(exp.maps, exp.baseline().maps)[0])
    default_line = [line for line in printed.splitlines() if "Finer" in line and "r = " in line][0]
    assert f"r = {r:.3f} with the base map" in default_line
    assert f"correlation with the base map {r:.2f}" in printed            # the why line: the same number
    # the overlays are drawn with cividis: their colours are cividis colours blended with the photo
    from matplotlib import colormaps

    finer = np.asarray(Image.open(out / "blue_grosbeak_finer.png").convert("RGB"), np.float64)
    photo = np.asarray(read_image(PHOTO), np.float64)
    colour = (finer - 0.5 * photo) / 0.5                                     # --alpha 0.5
    for name, near in (("cividis", True), ("jet", False)):
        lut = colormaps[name](np.linspace(0, 1, 1024))[:, :3] * 255
        sample = colour.reshape(-1, 3)[::97]
        dist = np.sqrt(((sample[:, None, :] - lut[None]) ** 2).sum(-1)).min(1)
        assert (np.median(dist) < 3) == near, (name, np.median(dist))


def test_explain_panel_titles_say_what_is_compared(tmp_path, capsys, monkeypatch):
    from finercam import viz

    seen = {}
    real = viz.map_panel

    def spy(image, rows, **kw):
        seen["rows"], seen["kw"] = rows, kw
        return real(image, rows, **kw)

    monkeypatch.setattr(viz, "map_panel", spy)
    assert main([str(PHOTO), "--model", "cnn", "--cmap", "viridis", "--num-references", "1", "--out", str(tmp_path)]) == 0
    inputs = load_model("cnn")
    exp = finercam.FinerCAM(inputs.model, inputs.layer, num_references=1)(inputs.transform(read_image(PHOTO))[None])
    names = inputs.class_names
    target, ref = names[int(exp.targets[0])], names[int(exp.references[0, 0])]
    titles = [c.get("title") for c in seen["rows"][0]]
    assert titles[2] == f"{target}, not {ref} (\u03b3=0.6)" and titles[3] == f"{target}, not {ref} (\u03b3=1)"
    assert seen["kw"]["cmap"] == "viridis" and seen["kw"]["suptitle"].endswith(f", not {ref}")


def _suggested(model) -> list:
    """The app's layers for the embedded CNN: the first two of finercam.suggest_layers."""
    names = [s.name for s in finercam.suggest_layers(model, (96, 96))][:2]
    assert names == ["block3", "block2"]
    return names


def test_app_layers_given_twice():
    """--layer given twice: both layers in the one model call, the page opens on the first."""
    from models_for_tests import images

    service = ExplainService(builtin_models("models_for_tests:TinyResNet", ["layer1", "layer2"]))
    buf = io.BytesIO()
    Image.fromarray((images(1)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(buf, format="PNG")
    answer = service.explain(buf.getvalue(), "models_for_tests:TinyResNet", "gradcam")
    view = answer["view"]
    assert answer["layers"] == view["layers"] == ["layer1", "layer2"] and view["layer"] == "layer1"
    m = service._model("models_for_tests:TinyResNet")
    x = m.transform(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))[None]
    exp = finercam.FinerCAM(m.model, ["layer1", "layer2"], candidates=10)(x)
    want = finercam.explorer.view_data(exp)["images"][0]["layers"]
    for got_layer, want_layer in zip(view["images"][0]["layers"], want, strict=True):
        np.testing.assert_allclose(np.frombuffer(base64.b64decode(got_layer["maps"]), "<f4"),
                                   np.frombuffer(base64.b64decode(want_layer["maps"]), "<f4"), rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def app():
    service = ExplainService(builtin_models(), max_pixels=200 * 200)
    server = make_server(service, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", service
    server.shutdown()
    server.server_close()


def _post(url, body):
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "image/png"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _png(size, colour=(40, 90, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def test_pixel_limit_is_a_413_naming_it(app):
    url, _ = app
    status, answer = _post(url + "/api/explain?model=cnn", _png((300, 200)))      # small in bytes
    assert status == 413
    assert "300 x 200 = 60,000 pixels" in answer["error"] and "limit of 40,000 pixels" in answer["error"]
    status, _ = _post(url + "/api/explain?model=cnn", _png((200, 200)))
    assert status == 200


def test_pillows_own_bomb_guard_is_a_413_too(monkeypatch):
    from PIL import Image as PILImage

    from finercam.apps.app import RequestError, _decode

    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1000)                     # 2x this raises
    with pytest.raises(RequestError) as info:
        _decode(_png((80, 80)), max_pixels=10**9)
    assert info.value.status == 413 and "too large" in str(info.value)


def test_app_explains_its_suggested_layers_in_one_call(app):
    url, service = app
    status, answer = _post(url + "/api/explain?model=cnn&method=gradcam", PHOTO.read_bytes())
    assert status == 413                                 # the photo is over this app's small limit
    small = io.BytesIO()
    read_image(PHOTO).resize((160, 120)).save(small, format="PNG")
    status, answer = _post(url + "/api/explain?model=cnn&method=gradcam", small.getvalue())
    assert status == 200
    m = service._model("cnn")
    suggested = _suggested(m.model)
    assert m.layers == suggested and answer["layers"] == suggested
    view = answer["view"]
    assert view["layers"] == suggested and view["layer"] == "block3"
    x = m.transform(Image.open(io.BytesIO(small.getvalue())).convert("RGB"))[None]
    exp = finercam.FinerCAM(m.model, suggested, candidates=10)(x)
    got = view["images"][0]["layers"][-1]
    want = finercam.explorer.view_data(exp)["images"][0]["layers"][-1]
    hi = np.frombuffer(base64.b64decode(got["maps"]), "<f4")
    np.testing.assert_allclose(hi, np.frombuffer(base64.b64decode(want["maps"]), "<f4"), rtol=1e-5, atol=1e-6)


@pytest.mark.browser
def test_top5_entry_picks_the_target_in_the_app(tmp_path):
    from explorer_browser import launch

    service = ExplainService(builtin_models())
    server = make_server(service, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    pw, browser = launch()
    page = browser.new_page()
    errors: list = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        page.wait_for_function("() => document.querySelectorAll('#fc-model option').length === 3")
        page.set_input_files("#fc-file", str(PHOTO))
        page.wait_for_function("() => document.querySelectorAll('#fc-preds button').length === 5", timeout=60000)
        second = page.locator("#fc-preds button").nth(1)
        second_id = int(second.get_attribute("data-class"))
        second.click()
        state = page.evaluate("() => window.finercam.state()")
        assert state["target"] == second_id and "fc-on" in (second.get_attribute("class") or "")
        m = service._model("cnn")
        x = m.transform(read_image(PHOTO))[None]
        want = finercam.FinerCAM(m.model, m.layers[0])(x, targets=[second_id], references=[state["references"]])
        got = np.asarray(page.evaluate("() => window.finercam.map()")["data"]).reshape(96, 96)
        np.testing.assert_allclose(got, want.maps[0], rtol=0, atol=TOL)
        assert page.locator(".fc-caption").inner_text().startswith(m.class_names[second_id] + ", not ")
        # the layers: each suggested one and the fusion, offered in the page
        layers = _suggested(m.model)
        labels = page.locator(".fc-radios[aria-label=layer] label").all_inner_texts()
        assert [t.strip() for t in labels] == (layers + ["fusion of all"] if len(layers) > 1 else layers)
        assert errors == []
    finally:
        page.close()
        browser.close()
        pw.stop()
        server.shutdown()
        server.server_close()
