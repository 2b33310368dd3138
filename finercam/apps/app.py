"""``finercam app``: a local web app to explain the images a person uploads or drops.

    finercam app                                   # http://127.0.0.1:8000/, the embedded models
    finercam app --model mypkg.nets:build --layer layer4 --port 8080
    finercam app --model mypkg.nets:build          # the layers finercam.suggest_layers proposes

The page asks for an image (file picker or drag and drop), a model (the embedded ``cnn`` and
``vit`` of the bird world, the ImageNet network of :func:`finercam.world.models.imagenet.load_imagenet`,
or the ``--model PKG.MOD:FACTORY`` or ``hf:DIR`` given on the command line, with ``--layer NAME``
or the layers suggested for it) and a base method. One model call per image (:class:`finercam.FinerCAM` over the model's suggested target layers,
:func:`finercam.suggest_layers`, or the ``--layer`` names given: a forward pass and one backward
per stored class) answers with the top-5 predictions, with class names, and the interactive view
of :mod:`finercam.explorer`: the target (any top-5 entry or stored class), the references, gamma,
the layer (each one, or their fusion), aggregation, base method and colour map are then explored
in the browser, with no further model call.

Safety: the server binds 127.0.0.1 unless ``--host`` says otherwise; an upload larger than
``--max-upload-mb`` is refused (413) before it is read, an image of more than ``--max-pixels`` pixels (default: Pillow's
decompression-bomb limit) is refused (413) before it is decoded, a body that is not an image gets
415, a bad
model or method 400, each with a one-line JSON ``{"error": ...}`` (never a traceback); model calls
run one at a time behind a lock, so concurrent requests cannot mix; only ``/``, ``/api/models``
and ``POST /api/explain`` exist (everything else is 404): the server reads no file of its own
choosing. Standard library only (:class:`http.server.ThreadingHTTPServer`).
"""
from __future__ import annotations

import argparse
import io
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
from .inputs import input_shape, load_model, with_layer

__all__ = ["AppModel", "AppServer", "ExplainService", "make_server", "builtin_models", "add_arguments", "run",
           "APP_METHODS", "DEFAULT_MAX_UPLOAD_MB", "DEFAULT_MAX_PIXELS", "SUGGESTED_LAYERS"]

APP_METHODS = ("gradcam", "layercam", "gradcam++", "xgradcam", "hirescam", "scorecam")
DEFAULT_MAX_UPLOAD_MB = 10.0
#: The largest image (width x height) the app decodes: Pillow's own decompression-bomb limit.
DEFAULT_MAX_PIXELS = 89_478_485
#: How many of :func:`finercam.suggest_layers`'s layers the app explains in its one model call.
SUGGESTED_LAYERS = 2
#: What the browser is allowed to do with the app's page: its own inline code, data: images, and
#: requests to this server only.
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
       "img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'")


@dataclass
class AppModel:
    """A classifier ready for the app: ``transform(pil) -> (3, H, W)`` input, whose pixels are
    ``x * std + mean`` in [0, 1] (how the page shows the input the map lies on).
    ``layers``: the target layers explained in one model call (the page shows the first, and
    offers each and their fusion).

    >>> import torch
    >>> m = AppModel("id", "identity", torch.nn.Identity(), ["0"], lambda im: None, (0.0,) * 3, (1.0,) * 3, None)
    >>> m.label(3)
    'class 3'
    """

    name: str
    description: str
    model: Any
    layers: list
    transform: Callable
    mean: Sequence[float]
    std: Sequence[float]
    class_names: Sequence[str] | None

    def label(self, k: int) -> str:
        names = self.class_names
        return str(names[k]) if names is not None and 0 <= k < len(names) else f"class {k}"


def _layers(inputs, given: Sequence[str] | None) -> list:
    """The layers the app explains: those given (``--layer``, once or more; ``auto``: the first
    suggested, :func:`finercam.apps.inputs.with_layer`), else the first :data:`SUGGESTED_LAYERS`
    of :func:`finercam.suggest_layers` at the model's input size (the model's own layer first
    where it has one); a model without a layer of its own and no suggestion is a
    :class:`~finercam.apps.common.UsageError`. Suggested layers are said on stderr."""
    if given:
        chosen = with_layer(inputs, list(given)).layer
        return [chosen] if isinstance(chosen, str) else list(chosen or [])
    from ..suggest import suggest_layers

    shape = input_shape(inputs)
    try:
        names = [s.name for s in suggest_layers(inputs.model, shape)[:SUGGESTED_LAYERS]]
    except ValueError as exc:
        if not inputs.layer:
            raise UsageError(f"--layer auto: {exc} (name a layer with --layer NAME)") from None
        names = []
    if inputs.layer and inputs.layer not in names:
        names = [inputs.layer] + names[:SUGGESTED_LAYERS - 1]
    if not inputs.layer:
        print(f"finercam app: {inputs.source}: layers {', '.join(names)}, suggested at "
              f"{shape[-2]} x {shape[-1]} (`finercam layers --model {inputs.source}` lists them)",
              file=sys.stderr)
    return names


def _app_model(spec: str, description: str, layers: Sequence[str] | None = None) -> AppModel:
    """Load ``spec`` the way ``finercam explain`` does (:func:`finercam.apps.inputs.load_model`:
    the embedded models at their training size in [0, 1], the ImageNet network with its own
    preprocessing, an import string at 224 px with the ImageNet mean/std)."""
    inputs = load_model(spec)
    model = inputs.model.eval()
    return AppModel(spec, description, model, _layers(inputs, layers), inputs.transform,
                    inputs.mean, inputs.std, None if inputs.class_names is None else list(inputs.class_names))


def builtin_models(custom: str | None = None, layer: str | Sequence[str] | None = None) -> dict:
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
        layers = [] if not layer else [layer] if isinstance(layer, str) else list(layer)
        shown = " + ".join(layers) or "suggested"
        description = (f"{custom} (layer {shown}, its processor's size and normalisation)" if custom.startswith("hf:")
                       else f"{custom} (layer {shown}, 224 px, ImageNet normalisation)")
        out = {custom: (f"{custom} (layer {shown})", lambda: _app_model(custom, description, layers)), **out}
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

    def __init__(self, models: dict, gamma: float = 0.6, num_references: int = 3, *,
                 max_pixels: int = DEFAULT_MAX_PIXELS, cmap: str = "jet"):
        from ..explorer import COLORMAPS

        if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
            raise ValueError(f"max_pixels must be an int >= 1, got {max_pixels!r}")
        if cmap not in COLORMAPS:
            raise ValueError(f"cmap must be one of {COLORMAPS}, got {cmap!r}")
        self.max_pixels = max_pixels
        self.cmap = cmap
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
        photo = _decode(data, self.max_pixels)
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
        exp = FinerCAM(m.model, m.layers, method=method, gamma=self.gamma,
                       num_references=self.num_references, candidates=10)(x)  # the page toggles 10 classes
        probs = torch.softmax(torch.from_numpy(np.asarray(exp.logits[0], np.float64)), 0).numpy()
        top = np.argsort(-probs)[:5]
        mean = torch.tensor(m.mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(m.std, dtype=torch.float32).view(3, 1, 1)
        shown = (x[0] * std + mean).clamp(0, 1)
        view = view_data(exp, images=shown[None], class_names=m.class_names,
                         title=f"{m.label(int(exp.targets[0]))}: {method} on {m.name}",
                         layer=exp.layer_names[0], cmap=self.cmap)
        return {"model": m.name, "method": method, "layers": list(exp.layer_names),
                "predictions": [{"id": int(k), "name": m.label(int(k)), "probability": float(probs[k])} for k in top],
                "view": view}


def _check_pixels(data: bytes, max_pixels: int) -> None:
    """A 413 RequestError naming the limit when the image's header declares more than
    ``max_pixels`` pixels (read before anything is decoded); unreadable headers pass on to the
    decoder, which answers them with 415."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
    except Image.DecompressionBombError as exc:
        raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                           f"the image is too large: {exc} (the app's limit is {max_pixels:,} pixels)") from None
    except Exception:  # not an image header Pillow knows: _decode says so
        return
    if width * height > max_pixels:
        raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                           f"the image has {width} x {height} = {width * height:,} pixels, more than the limit "
                           f"of {max_pixels:,} pixels (finercam app --max-pixels)")


def _decode(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS):
    """The upload as a PIL RGB image (finercam explain's reader); a 413 RequestError above
    ``max_pixels`` pixels, a 415 one for anything that is not a usable image."""
    _check_pixels(data, max_pixels)
    with tempfile.NamedTemporaryFile(suffix=".upload") as f:
        f.write(data)
        f.flush()
        try:
            return read_image(f.name)
        except ImageReadError as exc:  # Pillow's decompression-bomb guard is _check_pixels's 413
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
    p.add_argument("--model", metavar="PKG.MOD:FACTORY|hf:DIR", help="add your classifier to the page's models")
    p.add_argument("--layer", metavar="NAME|auto", action="append",
                   help="its target layer (give it twice for two layers, offered one by one and "
                        "fused; auto: the first suggested; default: the first two layers "
                        "`finercam layers` suggests)")
    p.add_argument("--gamma", type=float, default=0.6, help="the view's initial gamma (default 0.6)")
    p.add_argument("--references", type=int, default=3, metavar="T", help="initial number of references (default 3)")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, help="largest accepted upload (default 10)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help=f"largest accepted image, width x height (default {DEFAULT_MAX_PIXELS:,}: Pillow's limit)")
    p.add_argument("--cmap", default="jet", choices=("jet", "viridis", "cividis"),
                   help="the view's first colour map (default jet, the paper's; cividis is colour-blind safe)")
    p.add_argument("--verbose", action="store_true", help="log every request")


def run(args) -> int:
    """Serve until interrupted (Ctrl-C); returns 0.

    >>> p = argparse.ArgumentParser(prog="finercam app"); add_arguments(p)
    >>> run(p.parse_args(["--layer", "block2"]))
    Traceback (most recent call last):
    ...
    finercam.apps.common.UsageError: --layer names a layer of --model: give --model too
    """
    from ..explanation import check_gamma

    if args.layer and not args.model:
        raise UsageError("--layer names a layer of --model: give --model too")
    models = builtin_models(args.model, args.layer)
    if args.references < 1:
        raise UsageError(f"--references must be >= 1, got {args.references}")
    if args.max_pixels < 1:
        raise UsageError(f"--max-pixels must be >= 1, got {args.max_pixels}")
    with usage_errors():
        gamma = check_gamma(args.gamma)
    service = ExplainService(models, gamma=gamma, num_references=args.references,
                             max_pixels=args.max_pixels, cmap=args.cmap)
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
