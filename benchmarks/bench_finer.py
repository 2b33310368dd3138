"""Engine benchmark: what Finer-CAM costs over a forward pass, on a ResNet-50-shaped network.

Random weights, CPU, batch 8, 224 x 224 (Score-CAM: batch 1, 64 x 64, see below). Prints ratios
measured in this one run (medians of interleaved repetitions), never absolute claims:

(a) Finer-Grad-CAM (layer4, gamma 0.6, 3 references) / a no-grad forward     target <= 1.10
(b) an 11-value gamma sweep (0, 0.1, ..., 1: one call + 10 ``recombine``) / one call  <= 1.2
(c) torchcam 0.5.0 FinerCAM (GradCAM base, same model, layer, targets) against ours: time
    and peak resident memory of one call (each measured in a fresh process)
(d) Finer-Score-CAM / plain Score-CAM (same chunking, target logit only)     target <= 1.05
    Score-CAM runs one masked forward per channel; at layer4, batch 8 x 224 that is 16384
    forwards of ResNet-50 (about half an hour on 2 cores), so (d) explains layer1 (256 channels)
    of one 64 x 64 image, two interleaved runs each, the first of each serving as warm-up too.

(e) ``--table``: the cost of one default call against a no-grad forward of the same batch, on the
    four settings of issue 25 (embedded ViT ``blocks.3.norm1`` 16 x 96 px, EfficientNet-Lite0
    ``_bn1`` 8 x 224, the embedded CNN ``block3`` on one image, the ResNet-50-shaped network
    ``layer4`` 8 x 224), beside the per-class path of earlier versions (``candidates=10``: one
    backward per stored class), ``candidates=3`` and one backward of the paper's objective
    (``y_c - gamma mean_t y_t``, a tapped forward plus one ``autograd.grad``): every column a
    ratio to the forward, all contenders interleaved in one run.

(f) ``--breakdown``: where one call on the embedded CNN (``block3``, one image) spends its time,
    from cProfile's cumulative times (shares of the call, so load on the machine cancels out).

Run: ``PYTHONPATH=. python benchmarks/bench_finer.py`` (``--reps N``, ``--quick`` for a smoke run);
the table: ``PYTHONPATH=. OMP_NUM_THREADS=2 python benchmarks/bench_finer.py --table --reps 11``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import finercam  # noqa: E402
from finercam import kernels  # noqa: E402


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, width, stride=1):
        super().__init__()
        cout = width * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


class ResNet50Shaped(nn.Module):
    """ResNet-50's layout (3-4-6-3 bottlenecks, 2048 channels at layer4, 1000 classes)."""

    def __init__(self, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers, cin = [], 64
        for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            seq = []
            for b in range(blocks):
                seq.append(Bottleneck(cin, width, stride if b == 0 else 1))
                cin = width * 4
            layers.append(nn.Sequential(*seq))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build(batch, size):
    torch.manual_seed(0)
    model = ResNet50Shaped().eval()
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    return model, x


def timed(fn):
    """(wall seconds, CPU seconds of this process): on a shared machine the CPU time measures
    the work done, the wall time also the waiting for a core."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def medians(fns: dict, reps: int, warm: bool = True) -> dict:
    """Interleaved repetitions (so that load drifts hit every contender alike); per contender the
    median wall time and the median CPU time."""
    for fn in fns.values() if warm else ():
        fn()   # warm-up: oneDNN primitives, allocator
    times: dict = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            times[k].append(timed(fn))
    return {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}


def plain_scorecam(model, x, layer, target, budget_mb):
    """Score-CAM (Eq. 3) for the target only, chunked like ours: the baseline of (d)."""
    box: dict = {}
    h = layer.register_forward_hook(lambda m, i, o: box.__setitem__("a", o.detach()))
    try:
        with torch.no_grad():
            y = model(x)
    finally:
        h.remove()
    A = box["a"].float().numpy()
    N, K, hh, ww = A.shape
    H, W = x.shape[-2:]
    chunk = max(1, int(budget_mb * 2**20 // (3 * H * W * 4)))
    flat = A.reshape(N * K, hh, ww)
    t = torch.as_tensor(target)
    scores = torch.empty(N * K)
    with torch.no_grad():
        base = model(torch.zeros_like(x[:1]))[0]
        for i0 in range(0, N * K, chunk):
            i1 = min(N * K, i0 + chunk)
            masks = torch.from_numpy(kernels.postprocess(flat[i0:i1], (H, W), relu=False))
            n_idx = torch.arange(i0, i1) // K
            scores[i0:i1] = model(x[n_idx] * masks[:, None]).gather(1, t[n_idx, None])[:, 0]
    alpha = (scores.view(N, K) - base[t][:, None]).numpy()[:, None]
    return kernels.postprocess(kernels.combine(A, alpha)[:, 0], (H, W)), y


def peak_child(which: str) -> None:
    """Run one call in this (fresh) process and print the peak resident memory it added."""
    model, x = build(8, 224)
    targets = list(range(8))

    def status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
        return 0

    with torch.no_grad():
        model(x[:1])
    base = status("VmRSS:")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")   # reset VmHWM to the current RSS
    except OSError:
        pass
    if which == "ours":
        finercam.FinerCAM(model, "layer4", method="gradcam")(x, targets)
    else:
        from torchcam.methods import FinerCAM, GradCAM
        with FinerCAM(model, "layer4", input_shape=(3, 224, 224), base_method=GradCAM) as ex:
            scores = model(x)
            ex(class_idx=targets, scores=scores)
    print(json.dumps({"peak": status("VmHWM:") - base}))


def peak(which: str) -> float:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--peak-child", which],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak"] / 2**20


def table_cases(quick: bool):
    """(label, model, target layer, images) of the table's settings."""
    from finercam.world.models import load

    g = torch.Generator().manual_seed(3)
    cases = []
    vit = load("vit")
    cases.append(("embedded ViT, `blocks.3.norm1`, 16 x 96 px", vit, "blocks.3.norm1",
                  torch.rand(4 if quick else 16, 3, 96, 96, generator=g)))
    try:
        from finercam.world.models.imagenet import load_imagenet
        eff = load_imagenet().model
        cases.append(("EfficientNet-Lite0, `_bn1`, 8 x 224 px", eff, "_bn1",
                      torch.rand(2 if quick else 8, 3, 224, 224, generator=g) * 2 - 1))
    except ImportError:
        print("EfficientNet-Lite0 left out: the extra [imagenet] is not installed")
    cnn = load("cnn")
    cases.append(("embedded CNN, `block3`, 1 image", cnn, "block3", torch.rand(1, 3, 96, 96, generator=g)))
    model, x = build(2 if quick else 8, 112 if quick else 224)
    cases.append(("ResNet-50-shaped, `layer4`, 8 x 224 px", model, "layer4", x))
    return cases


def objective_once(model, layer, x, gamma=0.6, num_references=3):
    """One tapped forward and one backward of ``y_c - gamma mean_t y_t`` (nearest-logit references)."""
    from finercam.capture import model_state, tapped_forward
    from finercam.layers import resolve_layers

    layers = resolve_layers(model, layer)
    with model_state(model) as hooks:
        logits, taps = tapped_forward(model, x, layers, hooks, True)
        y = logits.detach()
        tgt = y.argmax(1)
        order = (y - y.gather(1, tgt[:, None])).abs().argsort(1)[:, 1:num_references + 1]
        v = torch.zeros_like(y).scatter_(1, tgt[:, None], 1.0)
        v.scatter_add_(1, order, torch.full(order.shape, -gamma / num_references))
        with torch.enable_grad():
            g = torch.autograd.grad((logits * v).sum(), taps)[0]
    return g


def table(reps: int, quick: bool) -> None:
    """(e): per setting, every contender's median CPU and wall time over the forward's."""
    print("| model, target layer, batch | no-grad forward (ms, wall) | default call | per class "
          "(`candidates=10`) | `candidates=3` | one backward of the objective |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, model, layer, x in table_cases(quick):
        default = finercam.FinerCAM(model, layer)
        per_class = finercam.FinerCAM(model, layer, candidates=10)
        three = finercam.FinerCAM(model, layer, candidates=3)

        def forward(model=model, x=x):
            with torch.no_grad():
                model(x)

        fns = {"forward": forward, "default": lambda c=default, x=x: c(x),
               "per_class": lambda c=per_class, x=x: c(x), "three": lambda c=three, x=x: c(x),
               "objective": lambda m=model, lay=layer, x=x: objective_once(m, lay, x)}
        t = medians(fns, reps)
        f = t["forward"]
        cells = " | ".join(f"{t[k][0] / f[0]:.2f}x (CPU {t[k][1] / f[1]:.2f}x)"
                           for k in ("default", "per_class", "three", "objective"))
        print(f"| {label} | 1.00 ({f[0] * 1e3:.1f} ms) | {cells} |", flush=True)
    print(f"\n{torch.get_num_threads()} threads, torch {torch.__version__}, medians of {reps} interleaved "
          f"calls, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def breakdown(calls: int = 400, **options) -> None:
    """(f): shares of one call on the embedded CNN, one image, from cProfile."""
    import cProfile
    import pstats

    from finercam.world.models import load

    net = load("cnn")
    x = torch.rand(1, 3, 96, 96, generator=torch.Generator().manual_seed(3))
    cam = finercam.FinerCAM(net, "block3", **options)
    for _ in range(30):
        cam(x)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        cam(x)
    prof.disable()
    st = pstats.Stats(prof).stats  # type: ignore[attr-defined]

    def cum(pred) -> float:
        return sum(v[3] for k, v in st.items() if pred(k)) / calls

    def named(part, name):
        return lambda k: part in k[0] and k[2] == name

    total = cum(named("finercam/finer.py", "__call__"))
    rows = {"the model's forward": cum(named("world/models/cnn.py", "forward")),
            "backward passes (torch.autograd.grad)": cum(named("torch/autograd/__init__.py", "grad")),
            "model_state": cum(lambda k: "contextlib.py" in k[0] and k[2] in ("__enter__", "__exit__")),
            "per-class statistics": cum(lambda k: k[2] in ("class_statistic", "device_statistic")),
            "Explanation (C-core combine, resize, min-max)": cum(named("finercam/explanation.py", "__init__")),
            "host conversions": cum(lambda k: k[2] in ("to_host", "_host_float32")),
            "reference ranking": cum(named("finercam/finer.py", "_choose_classes"))}
    rows["everything else"] = total - sum(rows.values())
    forward = rows["the model's forward"]
    print(f"FinerCAM(cnn, 'block3', {options}) on one image: {total * 1e6:.0f} us a call under cProfile, "
          f"{total / forward:.2f} forwards")
    for k, v in rows.items():
        print(f"| {k} | {100 * v / total:.0f} % |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="batch 2 at 112 and 32 x 32 Score-CAM: a smoke run")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--table", action="store_true", help="(e) only: the default call against a forward, "
                    "four models")
    ap.add_argument("--breakdown", action="store_true", help="(f) only: cProfile shares of a call, embedded CNN")
    ap.add_argument("--peak-child", choices=["ours", "torchcam"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.peak_child:
        peak_child(args.peak_child)
        return
    if args.table:
        table(args.reps, args.quick)
        return
    if args.breakdown:
        breakdown()
        breakdown(candidates=10)
        return
    batch, size = (2, 112) if args.quick else (8, 224)
    model, x = build(batch, size)
    targets = list(range(batch))
    rows = []

    cam = finercam.FinerCAM(model, "layer4", method="gradcam", gamma=0.6, num_references=3)
    gammas = [i / 10 for i in range(11)]

    def forward():
        with torch.no_grad():
            model(x)

    def one():
        cam(x, targets)

    def sweep():
        exp = cam(x, targets)
        [exp.recombine(gamma=g).maps for g in gammas[1:]]

    from torchcam.methods import FinerCAM as TCFinerCAM
    from torchcam.methods import GradCAM as TCGradCAM

    def torchcam_call():
        with TCFinerCAM(model, "layer4", input_shape=(3, size, size), base_method=TCGradCAM) as ex:
            scores = model(x)
            ex(class_idx=targets, scores=scores)

    t = medians({"forward": forward, "ours": one, "sweep": sweep, "torchcam": torchcam_call}, args.reps)

    def row(name, a, b, target):
        rows.append((name, t[a][1] / t[b][1], t[a][0] / t[b][0], target,
                     f"{t[a][1]:.2f} / {t[b][1]:.2f} s", f"{t[a][0]:.2f} / {t[b][0]:.2f} s"))

    row("(a) Finer-Grad-CAM / no-grad forward", "ours", "forward", "<= 1.10")
    row("(b) 11-gamma sweep / one map", "sweep", "ours", "<= 1.2")
    row("(c) time: ours / torchcam FinerCAM", "ours", "torchcam", "< 1")
    if not args.quick:
        p_ours, p_tc = peak("ours"), peak("torchcam")
        rows.append(("(c) peak memory: ours / torchcam", p_ours / p_tc, p_ours / p_tc, "< 1",
                     f"{p_ours:.0f} / {p_tc:.0f} MiB over the model", "(resident set, fresh processes)"))

    s_size = 32 if args.quick else 64
    sx = torch.rand(1, 3, s_size, s_size, generator=torch.Generator().manual_seed(2))
    scam = finercam.FinerCAM(model, "layer1", method="scorecam")
    t = medians({"plain": lambda: plain_scorecam(model, sx, model.layer1, [0], scam.score_budget_mb),
                 "finer": lambda: scam(sx, [0])}, 2, warm=False)
    row(f"(d) Finer-Score-CAM / plain Score-CAM (layer1, 1 x {s_size}^2)", "finer", "plain", "<= 1.05")

    print(f"ResNet-50-shaped, random weights, batch {batch}, {size} x {size}, CPU, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, median of {args.reps}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print()
    print("| ratio | CPU time | wall time | target | CPU times | wall times |")
    print("|---|---:|---:|---|---|---|")
    for name, cpu, wall, target, cpu_d, wall_d in rows:
        print(f"| {name} | {cpu:.3f} | {wall:.3f} | {target} | {cpu_d} | {wall_d} |")


if __name__ == "__main__":
    main()
