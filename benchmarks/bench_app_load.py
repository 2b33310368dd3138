"""``finercam app`` under load: 8 concurrent uploads, their latencies (median, p95, max) and
whether each answer is the one the same photo gets alone.

The server is ``python -m finercam app`` in a child process; 8 client threads here post the photos of /work/shared/images (or --images DIR) at once, ``--rounds``
times (8 x rounds requests). The app runs one model call at a time behind its lock, so the last of
8 simultaneous uploads waits for the 7 before it: p95 is about 8 model calls plus the transfers.
Every answer is compared with the answer the same photo got alone (top-5 ids and the view's
per-layer data): concurrency must not mix them.

Models: the embedded CNN (96 px) and EfficientNet-Lite0 (224 px, the extra ``finercam[imagenet]``),
``gradcam``, the layers the app explains (the first two of :func:`finercam.suggest_layers`).

Run (nice'd: the machine is shared):
``PYTHONPATH=. nice -n 10 python benchmarks/bench_app_load.py`` (``--rounds 5 --clients 8``).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(url: str, body: bytes) -> tuple[float, dict, int]:
    t0 = time.perf_counter()
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "image/jpeg"})
    with urllib.request.urlopen(req, timeout=900) as r:
        raw = r.read()
    return time.perf_counter() - t0, json.loads(raw), len(raw)


def _key(answer: dict):
    return ([p["id"] for p in answer["predictions"]], answer["view"]["images"][0]["layers"])


def load(model: str, photos: list[Path], clients: int, rounds: int) -> dict:
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    server = subprocess.Popen([sys.executable, "-m", "finercam", "app", "--port", str(port), "--max-upload-mb", "50"],
                              stdout=subprocess.PIPE, text=True, env=env)
    url = f"http://127.0.0.1:{port}/api/explain?model={model}&method=gradcam"
    bodies = [p.read_bytes() for p in photos]
    try:
        assert server.stdout is not None and "finercam app:" in server.stdout.readline()   # listening
        alone = [_post(url, b) for b in bodies]          # the first loads the model
        alone = [_post(url, b) for b in bodies]          # warm: the sequential reference answers
        seconds_alone = statistics.median(t for t, _, _ in alone)
        latencies, mixed = [], 0
        with ThreadPoolExecutor(clients) as pool:
            for r in range(rounds):
                picks = [(r * clients + i) % len(bodies) for i in range(clients)]
                for i, (t, answer, _) in zip(picks, pool.map(lambda i: _post(url, bodies[i]), picks), strict=True):
                    latencies.append(t)
                    mixed += _key(answer) != _key(alone[i][1])
    finally:
        server.terminate()
        server.wait(timeout=60)
    q = statistics.quantiles(latencies, n=20, method="inclusive")
    return {"layers": alone[0][1]["layers"], "alone_ms": 1e3 * seconds_alone,
            "model_call_ms": 1e3 * statistics.median(a["seconds"] for _, a, _ in alone),
            "answer_kb": statistics.median(n for _, _, n in alone) / 1024, "p50_ms": 1e3 * statistics.median(latencies),
            "p95_ms": 1e3 * q[18], "max_ms": 1e3 * max(latencies), "requests": len(latencies), "mixed": mixed}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="cnn,imagenet")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--images", default="/work/shared/images")
    args = p.parse_args()
    photos = sorted(q for q in Path(args.images).iterdir() if q.suffix.lower() in (".jpg", ".png", ".jfif"))
    print(f"{args.clients} concurrent uploads x {args.rounds} rounds, gradcam, photos of {args.images} "
          f"({len(photos)}), OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    for model in args.models.split(","):
        r = load(model, photos, args.clients, args.rounds)
        print(f"  {model:9s} layers {'+'.join(r['layers']):14s} alone {r['alone_ms']:7.1f} ms "
              f"(model call + view {r['model_call_ms']:6.1f} ms, answer {r['answer_kb']:6.0f} KB)   "
              f"concurrent: p50 {r['p50_ms']:7.1f} ms  p95 {r['p95_ms']:7.1f} ms  max {r['max_ms']:7.1f} ms   "
              f"{r['requests']} requests, {r['mixed']} answers differing from the photo's own")
    return 0


if __name__ == "__main__":
    sys.exit(main())
