"""``finercam app``: a local web app to explain the images a person uploads or drops.

    finercam app                                   # http://127.0.0.1:8000/, the embedded models
    finercam app --model mypkg.nets:build --layer layer4 --port 8080

The page asks for an image (file picker or drag and drop), a model (the embedded ``cnn`` and
``vit`` of the bird world, the ImageNet network of :func:`finercam.world.models.imagenet.load_imagenet`,
or the ``--model PKG.MOD:FACTORY --layer NAME`` given on the command line) and a base method. One
model call per image (:class:`finercam.FinerCAM`: a forward pass and one backward per stored class)
answers with the top-5 predictions, with class names, and the interactive view of
:mod:`finercam.explorer`: gamma, references, aggregation and base method are then explored in the
browser, with no further model call.

Safety: the server binds 127.0.0.1 unless ``--host`` says otherwise; an upload larger than
``--max-upload-mb`` is refused (413) before it is read, a body that is not an image gets 415, a bad
model or method 400, each with a one-line JSON ``{"error": ...}`` (never a traceback); model calls
run one at a time behind a lock, so concurrent requests cannot mix; only ``/``, ``/api/models``
and ``POST /api/explain`` exist (everything else is 404): the server reads no file of its own
choosing. Standard library only (:class:`http.server.ThreadingHTTPServer`).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import parse_qs, urlsplit

import numpy as np

from ..images import ImageReadError, read_image
from .common import UsageError, one_line_errors, usage_errors
from .inputs import load_model

__all__ = ["AppModel", "AppServer", "ExplainService", "make_server", "builtin_models", "add_arguments", "run",
           "APP_METHODS", "DEFAULT_MAX_UPLOAD_MB"]

APP_METHODS = ("gradcam", "layercam", "gradcam++", "xgradcam", "hirescam", "scorecam")
DEFAULT_MAX_UPLOAD_MB = 10.0
#: What the browser is allowed to do with the app's page: its own inline code, data: images, and
#: requests to this server only.
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
       "img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'")


@dataclass
class AppModel:
    """A classifier ready for the app: ``transform(pil) -> (3, H, W)`` input, whose pixels are
    ``x * std + mean`` in [0, 1] (how the page shows the input the map lies on).

    >>> import torch
    >>> m = AppModel("id", "identity", torch.nn.Identity(), "0", lambda im: None, (0.0,) * 3, (1.0,) * 3, None)
    >>> m.label(3)
    'class 3'
    """

    name: str
    description: str
    model: Any
    layer: Any
    transform: Callable
    mean: Sequence[float]
    std: Sequence[float]
    class_names: Sequence[str] | None

    def label(self, k: int) -> str:
        names = self.class_names
        return str(names[k]) if names is not None and 0 <= k < len(names) else f"class {k}"


def _app_model(spec: str, description: str, layer: str | None = None) -> AppModel:
    """Load ``spec`` the way ``finercam explain`` does (:func:`finercam.apps.inputs.load_model`:
    the embedded models at their training size in [0, 1], the ImageNet network with its own
    preprocessing, an import string at 224 px with the ImageNet mean/std)."""
    inputs = load_model(spec)
    return AppModel(spec, description, inputs.model.eval(), layer or inputs.layer, inputs.transform,
                    inputs.mean, inputs.std, None if inputs.class_names is None else list(inputs.class_names))


def builtin_models(custom: str | None = None, layer: str | None = None) -> dict:
    """name -> (description, loader): the embedded ``cnn`` and ``vit``, ``imagenet``, and the
    ``--model`` factory when given (loaded when first used).

    >>> list(builtin_models())
    ['cnn', 'vit', 'imagenet']
    """
    out = {"cnn": ("embedded CNN, bird world",
                   lambda: _app_model("cnn", "embedded cnn (bird world, 16 classes, 96 px)")),
           "vit": ("embedded ViT, bird world",
                   lambda: _app_model("vit", "embedded vit (bird world, 16 classes, 96 px)")),
           "imagenet": ("EfficientNet-Lite0, ImageNet-1k",
                        lambda: _app_model("imagenet", "EfficientNet-Lite0, ImageNet-1k (1,000 classes, 224 px)"))}
    if custom is not None:
        if not layer:
            raise UsageError("--layer is required with --model (the dotted name of the target layer)")
        description = f"{custom} (layer {layer}, 224 px, ImageNet normalisation)"
        out = {custom: (f"{custom} (layer {layer})", lambda: _app_model(custom, description, layer)), **out}
    return out


class RequestError(Exception):
    """An answer other than 200: ``status`` and a one-line message for the page."""

    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


class ExplainService:
    """Loads models when first asked and explains one uploaded image per call, one call at a time.

    ``models``: name -> (description, loader returning an :class:`AppModel`).

    >>> service = ExplainService(builtin_models())
    >>> [m["name"] for m in service.catalogue()["models"]], service.catalogue()["methods"][:2]
    (['cnn', 'vit', 'imagenet'], ['gradcam', 'layercam'])
    """

    def __init__(self, models: dict, gamma: float = 0.6, num_references: int = 3):
        self.models = dict(models)
        self.gamma = gamma
        self.num_references = num_references
        self._loaded: dict = {}
        self._lock = threading.Lock()   # one model call at a time: requests cannot mix

    def catalogue(self) -> dict:
        return {"models": [{"name": k, "description": v[0]} for k, v in self.models.items()],
                "methods": list(APP_METHODS), "gamma": self.gamma}

    def _model(self, name: str) -> AppModel:
        if name not in self.models:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"model must be one of {', '.join(self.models)}, got {name!r}")
        if name not in self._loaded:
            try:
                self._loaded[name] = self.models[name][1]()
            except (ImportError, UsageError, FileNotFoundError) as exc:
                raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, f"model {name!r} cannot be loaded: {exc}") from None
        return self._loaded[name]

    def explain(self, data: bytes, model: str, method: str) -> dict:
        """The answer to one upload: top-5 predictions and the view's data (JSON-ready)."""
        if method not in APP_METHODS:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"method must be one of {', '.join(APP_METHODS)}, got {method!r}")
        photo = _decode(data)
        with self._lock:
            m = self._model(model)        # loaded once, at its first use (not timed)
            t0 = time.perf_counter()
            answer = self._explain_locked(m, photo, method)
            answer["seconds"] = time.perf_counter() - t0
        return answer

    def _explain_locked(self, m: AppModel, photo, method: str) -> dict:
        import torch

        from ..explorer import view_data
        from ..finer import FinerCAM

        x = m.transform(photo)
        x = (x if x.ndim == 4 else x[None]).float()
        exp = FinerCAM(m.model, m.layer, method=method, gamma=self.gamma,
                       num_references=self.num_references)(x)
        probs = torch.softmax(torch.from_numpy(np.asarray(exp.logits[0], np.float64)), 0).numpy()
        top = np.argsort(-probs)[:5]
        mean = torch.tensor(m.mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(m.std, dtype=torch.float32).view(3, 1, 1)
        shown = (x[0] * std + mean).clamp(0, 1)
        view = view_data(exp, images=shown[None], class_names=m.class_names,
                         title=f"{m.label(int(exp.targets[0]))}: {method} on {m.name}")
        return {"model": m.name, "method": method,
                "predictions": [{"id": int(k), "name": m.label(int(k)), "probability": float(probs[k])} for k in top],
                "view": view}


def _decode(data: bytes):
    """The upload as a PIL RGB image (finercam explain's reader), else a 415 RequestError."""
    with tempfile.NamedTemporaryFile(suffix=".upload") as f:
        f.write(data)
        f.flush()
        try:
            return read_image(f.name)
        except ImageReadError as exc:  # also Pillow's decompression-bomb guard
            raise RequestError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                               f"the upload is not an image Pillow can read ({exc.reason})") from None


def app_page() -> str:
    """The app's page: the upload form (finercam/apps/app.js) above an empty interactive view.

    >>> "finercamApp" in app_page() and "http://" not in app_page()
    True
    """
    from ..explorer import page_html

    script = (Path(__file__).resolve().parent / "app.js").read_text(encoding="utf-8")
    return page_html(None, "finercam app", app_script=script)


class Handler(BaseHTTPRequestHandler):
    """``GET /`` (the page), ``GET /api/models``, ``POST /api/explain?model=M&method=X`` with the
    image file as the body; everything else 404. Errors are JSON ``{"error": message}``."""

    server_version = "finercam-app"
    timeout = 60          # seconds a connection may stay idle or slow before it is closed
    sys_version = ""
    protocol_version = "HTTP/1.1"
    server: AppServer

    def do_GET(self):  # noqa: N802 (the http.server naming)
        path = urlsplit(self.path).path
        if path == "/":
            self._send(HTTPStatus.OK, self.server.page.encode("utf-8"), "text/html; charset=utf-8")
        elif path == "/api/models":
            self._json(HTTPStatus.OK, self.server.service.catalogue())
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {path}"})

    def do_POST(self):  # noqa: N802
        url = urlsplit(self.path)
        try:
            if url.path != "/api/explain":
                raise RequestError(HTTPStatus.NOT_FOUND, f"no such page: {url.path}")
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            data = self._body()
            answer = self.server.service.explain(data, query.get("model", ""), query.get("method", "gradcam"))
            self._json(HTTPStatus.OK, answer)
        except RequestError as exc:
            self._json(exc.status, {"error": str(exc)})
        except Exception as exc:  # never a traceback page: a message, and the traceback on stderr
            traceback.print_exc(file=sys.stderr)
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"the explanation failed: {type(exc).__name__}: {exc}"})

    def _body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "send the image with a Content-Length")
        n, limit = int(length), self.server.max_bytes
        if n > limit:
            self.close_connection = True  # the body is not read: the connection cannot be reused
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"the upload has {n / 2**20:.1f} MB, more than the limit of {limit / 2**20:.1f} MB")
        if n == 0:
            raise RequestError(HTTPStatus.BAD_REQUEST, "the upload is empty: send an image file")
        return self.rfile.read(n)

    def _json(self, status: HTTPStatus, obj) -> None:
        self._send(status, json.dumps(obj, separators=(",", ":")).encode("utf-8"), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002 (the http.server signature)
        if self.server.verbose:
            super().log_message(format, *args)


class AppServer(ThreadingHTTPServer):
    """The app's HTTP server: the :class:`ExplainService`, the page, the upload limit in bytes."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], service: ExplainService, page: str, max_bytes: int,
                 verbose: bool = False):
        super().__init__(address, Handler)
        self.service = service
        self.page = page
        self.max_bytes = max_bytes
        self.verbose = verbose


def make_server(service: ExplainService, host: str = "127.0.0.1", port: int = 8000,
                max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, verbose: bool = False) -> AppServer:
    """A started-on-demand app server (call ``serve_forever``); ``port=0`` picks a free port
    (``server.server_address[1]``).

    >>> srv = make_server(ExplainService(builtin_models()), port=0)
    >>> srv.server_address[0], srv.max_bytes
    ('127.0.0.1', 10485760)
    >>> srv.server_close()
    """
    if not (isinstance(max_upload_mb, (int, float)) and 0 < max_upload_mb <= 1024):
        raise ValueError(f"max_upload_mb must be in (0, 1024], got {max_upload_mb!r}")
    return AppServer((host, port), service, app_page(), int(max_upload_mb * 2**20), verbose)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``finercam app`` options.

    >>> p = argparse.ArgumentParser(prog="finercam app"); add_arguments(p)
    >>> a = p.parse_args(["--port", "0"]); a.host, a.port, a.max_upload_mb
    ('127.0.0.1', 0, 10.0)
    """
    one_line_errors(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: a free one)")
    p.add_argument("--model", metavar="PKG.MOD:FACTORY", help="add your classifier to the page's models")
    p.add_argument("--layer", metavar="NAME", help="its target layer (required with --model)")
    p.add_argument("--gamma", type=float, default=0.6, help="the view's initial gamma (default 0.6)")
    p.add_argument("--references", type=int, default=3, metavar="T", help="initial number of references (default 3)")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, help="largest accepted upload (default 10)")
    p.add_argument("--verbose", action="store_true", help="log every request")


def run(args) -> int:
    """Serve until interrupted (Ctrl-C); returns 0.

    >>> p = argparse.ArgumentParser(prog="finercam app"); add_arguments(p)
    >>> run(p.parse_args(["--model", "os:getcwd"]))
    Traceback (most recent call last):
    ...
    finercam.apps.common.UsageError: --layer is required with --model (the dotted name of the target layer)
    """
    from ..explanation import check_gamma

    models = builtin_models(args.model, args.layer)
    if args.references < 1:
        raise UsageError(f"--references must be >= 1, got {args.references}")
    with usage_errors():
        gamma = check_gamma(args.gamma)
    service = ExplainService(models, gamma=gamma, num_references=args.references)
    server = make_server(service, args.host, args.port, args.max_upload_mb, args.verbose)
    host, port = server.server_address[:2]
    host = host.decode() if isinstance(host, bytes) else host  # an AF_UNIX address would be bytes
    print(f"finercam app: http://{host}:{port}/  (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
