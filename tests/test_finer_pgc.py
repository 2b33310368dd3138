"""objective="pgc" against pytorch-grad-cam's formula (shared/PEERS.md section 2) recomputed here."""
import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import finercam
from models_for_tests import TinyResNet, images, method_map, seeded


def pgc_oracle(model, x, layers, method, alpha=1.0, T=3):
    """pytorch-grad-cam's FinerCAM: ranks of |y - y_max|, the softmax-weighted target with
    +1e-9, a full backward, per-layer relu -> min-max (1e-7) -> bilinear resize, layer mean ->
    min-max (1e-7)."""
    m = copy.deepcopy(model).eval()
    named = dict(m.named_modules())
    box = {}

    def keep(name):
        def fn(mod, inputs, out):
            out.retain_grad()
            box[name] = out
        return fn

    hooks = [named[name].register_forward_hook(keep(name)) for name in layers]
    with torch.enable_grad():
        y = m(x)
        yd = y.detach().numpy()
        tl = yd.max(axis=-1)
        order = np.argsort(np.abs(yd - tl[:, None]), axis=-1, kind="stable")
        loss = 0
        for n in range(len(y)):
            main, refs = int(order[n, 0]), [int(order[n, i]) for i in range(1, T + 1)]
            prob = torch.softmax(y[n], dim=-1)
            w = [prob[i] for i in refs]
            num = sum(wi * (y[n, main] - alpha * y[n, i]) for wi, i in zip(w, refs))
            loss = loss + num / (sum(w) + 1e-9)
        loss.backward()
    for h in hooks:
        h.remove()
    per = []
    for name in layers:
        A, g = box[name].detach(), box[name].grad
        cam = method_map(method, A, g).clamp(min=0)
        cam = cam - cam.amin((1, 2), keepdim=True)
        cam = cam / (1e-7 + cam.amax((1, 2), keepdim=True))
        per.append(F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0])
    out = torch.stack(per).mean(0)
    if len(layers) > 1:
        out = out - out.amin((1, 2), keepdim=True)
        out = out / (1e-7 + out.amax((1, 2), keepdim=True))
    return out.numpy(), order


@pytest.mark.parametrize("method,layers", [("gradcam", ["layer2"]), ("layercam", ["layer2"]),
                                           ("gradcam", ["layer1", "layer2"])])
def test_pgc_normal_regime(method, layers):
    net = seeded(TinyResNet)
    x = images(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exp = finercam.FinerCAM(net, layers, method=method, objective="pgc")(x)
    want, order = pgc_oracle(net, x, layers, method)
    assert exp.gamma == 1.0
    assert exp.references.tolist() == order[:, 1:4].tolist()
    np.testing.assert_allclose(exp.maps, want, atol=2e-5)


def test_pgc_sign_flip_regime_warns_and_matches():
    net = seeded(TinyResNet)
    x = images(2)
    with torch.no_grad():
        top = int(net(x)[0].argmax())
        net.fc.bias[top] += 20.0
    with pytest.warns(RuntimeWarning, match="flips"):
        exp = finercam.FinerCAM(net, "layer2", objective="pgc")(x, targets=[top, top])
    want, _ = pgc_oracle(net, x, ["layer2"], "gradcam")
    np.testing.assert_allclose(exp.maps, want, atol=2e-5)
    # The paper's objective does not flip: its map differs from pgc's there.
    paper = finercam.FinerCAM(net, "layer2", gamma=1.0)(x, targets=[top, top])
    assert np.abs(paper.maps - exp.maps).max() > 0.1


def test_pgc_baseline_and_no_recombine():
    net = seeded(TinyResNet)
    x = images(2)
    exp = finercam.FinerCAM(net, "layer2", objective="pgc")(x)
    plain = finercam.FinerCAM(net, "layer2", gamma=0.0)(x)
    # pgc's plain Grad-CAM: same map as ours before normalisation.
    np.testing.assert_allclose(exp.baseline().raw_maps, plain.raw_maps, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="objective='paper'"):
        exp.recombine(gamma=0.5)
