"""``finercam app`` on 127.0.0.1 (a free port): uploads through HTTP and through the page in a real
browser; the answer against FinerCAM run directly on the same input; bad uploads get a 4xx and a
one-line JSON message; concurrent uploads do not mix; nothing outside the app's routes is served.
"""
import http.client
import json
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

import finercam
from explorer_browser import browser  # noqa: F401 (the fixture)
from finercam.apps.app import ExplainService, builtin_models, make_server
from finercam.images import read_image

TOL = 1e-4


def _photo(tmp_path, name, colour, size=(120, 90)):
    """A small photo-like PNG (a disc on a gradient), different per colour."""
    from PIL import Image, ImageDraw

    h, w = size[1], size[0]
    ramp = np.linspace(0, 255, w, dtype=np.uint8)[None, :, None].repeat(h, 0).repeat(3, 2)
    im = Image.fromarray(ramp)
    ImageDraw.Draw(im).ellipse((w // 4, h // 4, 3 * w // 4, 3 * h // 4), fill=colour)
    path = tmp_path / name
    im.save(path)
    return path


@pytest.fixture(scope="module")
def app():
    service = ExplainService(builtin_models())
    server = make_server(service, port=0, max_upload_mb=0.25)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", service
    server.shutdown()
    server.server_close()


def _post(url, body, content_type="image/png"):
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.load(r), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null"), dict(e.headers)


def _direct(service, path, method="gradcam", layers=None):
    """FinerCAM on the app's own model and input, without the app (its layers, or ``layers``)."""
    m = service._model("cnn")
    x = m.transform(read_image(path))[None]
    return finercam.FinerCAM(m.model, m.layers if layers is None else layers, method=method, candidates=10)(x), m


def test_upload_answer_equals_a_direct_finercam_call(app, tmp_path):
    url, service = app
    path = _photo(tmp_path, "a.png", (30, 60, 200))
    status, answer, headers = _post(url + "/api/explain?model=cnn&method=layercam", path.read_bytes())
    assert status == 200 and "default-src 'none'" in headers["Content-Security-Policy"]
    exp, m = _direct(service, path, "layercam")
    probs = torch.softmax(torch.as_tensor(exp.logits[0], dtype=torch.float64), 0).numpy()
    top = np.argsort(-probs)[:5]
    assert [p["id"] for p in answer["predictions"]] == top.tolist()
    assert [p["name"] for p in answer["predictions"]] == [m.class_names[k] for k in top]
    np.testing.assert_allclose([p["probability"] for p in answer["predictions"]], probs[top], rtol=1e-6)
    view = answer["view"]
    assert view["method"] == "layercam" and view["images"][0]["candidates"] == exp.candidates[0].tolist()
    assert view["images"][0]["image"].startswith("data:image/png;base64,")


@pytest.mark.parametrize("body,content_type,status,words", [
    (b"GIF89a but not really an image", "image/gif", 415, "not an image"),
    (b"<html>hello</html>", "text/html", 415, "not an image"),
    (b"", "image/png", 400, "empty"),
    (bytes(300 * 1024), "image/png", 413, "limit"),
])
def test_bad_uploads_get_a_4xx_and_a_message(app, body, content_type, status, words):
    url, _ = app
    got, answer, headers = _post(url + "/api/explain?model=cnn", body, content_type)
    assert got == status and words in answer["error"] and headers["Content-Type"] == "application/json"
    assert "Traceback" not in answer["error"]


@pytest.mark.parametrize("query,words", [("model=resnet9000", "model must be one of"),
                                         ("model=cnn&method=magic", "method must be one of")])
def test_bad_model_or_method(app, tmp_path, query, words):
    url, _ = app
    got, answer, _ = _post(url + "/api/explain?" + query, _photo(tmp_path, "b.png", (200, 0, 0)).read_bytes())
    assert got == 400 and words in answer["error"]


def test_missing_length_and_other_paths(app):
    url, _ = app
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", "/api/explain?model=cnn")
    conn.endheaders()
    r = conn.getresponse()
    assert r.status == 411 and "Content-Length" in json.load(r)["error"]
    conn.close()
    for path in ("/../../etc/passwd", "/finercam/explorer.py", "/explorer.js", "/api/explain", "/%2e%2e/setup.py"):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(url + path, timeout=30)
        assert info.value.code == 404
    with urllib.request.urlopen(url + "/api/models", timeout=30) as r:
        assert [m["name"] for m in json.load(r)["models"]] == ["cnn", "vit", "imagenet"]


def test_concurrent_uploads_do_not_mix(app, tmp_path):
    url, service = app
    paths = [_photo(tmp_path, f"c{i}.png", c) for i, c in enumerate([(250, 200, 0), (0, 90, 40), (120, 0, 160), (40, 40, 40)])]
    alone = [_post(url + "/api/explain?model=cnn", p.read_bytes())[1] for p in paths]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda p: _post(url + "/api/explain?model=cnn", p.read_bytes())[1], paths * 2))
    for i, answer in enumerate(together):
        mine = alone[i % 4]
        assert answer["predictions"] == mine["predictions"]
        assert answer["view"]["images"][0]["layers"] == mine["view"]["images"][0]["layers"]


def test_server_binds_localhost_by_default():
    server = make_server(ExplainService(builtin_models()), port=0)
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.server_close()
    with pytest.raises(ValueError, match="max_upload_mb"):
        make_server(ExplainService(builtin_models()), port=0, max_upload_mb=0)


def test_upload_in_the_browser_then_explore(app, browser, tmp_path):
    url, service = app
    path = _photo(tmp_path, "bird.png", (20, 80, 220))
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(url + "/")
        page.wait_for_function("() => document.querySelectorAll('#fc-model option').length === 3")
        page.select_option("#fc-method", "gradcam++")
        page.set_input_files("#fc-file", str(path))
        page.wait_for_function("() => document.querySelectorAll('#fc-preds li').length === 5", timeout=60000)
        # the page opens on the first of the app's layers: FinerCAM on that layer alone
        exp, m = _direct(service, path, "gradcam++", layers=service._model("cnn").layers[0])
        np.testing.assert_allclose(np.asarray(page.evaluate("() => window.finercam.map()")["data"]).reshape(96, 96),
                                   exp.maps[0], rtol=0, atol=TOL)
        # explore without the model: a state set in the page against recombine
        refs = [int(c) for c in exp.candidates[0, [2, 4, 6]]]
        page.evaluate("s => window.finercam.set(s)", {"gamma": 2.5, "references": refs, "aggregate": "max"})
        np.testing.assert_allclose(np.asarray(page.evaluate("() => window.finercam.map()")["data"]).reshape(96, 96),
                                   exp.recombine(gamma=2.5, references=[refs], aggregate="max").maps[0], rtol=0, atol=TOL)
        top = page.locator("#fc-preds li").first.inner_text()
        assert m.class_names[int(exp.targets[0])] in top
        # a bad file in the page: the message is shown, the view stays
        bad = tmp_path / "notes.png"
        bad.write_bytes(b"plain text, not a picture")
        page.set_input_files("#fc-file", str(bad))
        page.wait_for_function("() => document.querySelector('#fc-status').className === 'fc-error'")
        assert "not an image" in page.locator("#fc-status").inner_text()
        assert errors == []
    finally:
        page.close()


def test_your_model_from_an_import_string(tmp_path):
    """--model PKG.MOD:FACTORY --layer NAME: resized to 224, ImageNet-normalised, ids for names."""
    from finercam.apps.cli import main
    from finercam.apps.inputs import IMAGENET_MEAN, IMAGENET_STD, default_transform

    service = ExplainService(builtin_models("models_for_tests:TinyResNet", "layer2"))
    assert list(service.models)[0] == "models_for_tests:TinyResNet"
    path = _photo(tmp_path, "mine.png", (10, 200, 90))
    answer = service.explain(path.read_bytes(), "models_for_tests:TinyResNet", "xgradcam")
    m = service._model("models_for_tests:TinyResNet")
    x = default_transform()(read_image(path))[None]
    exp = finercam.FinerCAM(m.model, "layer2", method="xgradcam", candidates=10)(x)
    assert answer["view"]["size"] == [224, 224] and answer["predictions"][0]["id"] == int(exp.targets[0])
    assert answer["predictions"][0]["name"] == f"class {int(exp.targets[0])}"
    assert m.mean == IMAGENET_MEAN and m.std == IMAGENET_STD
    assert main(["app", "--layer", "layer2"]) == 2                               # no --model
    assert main(["app", "--references", "0", "--port", "0"]) == 2
