"""objective="pgc" against pytorch-grad-cam itself (``grad-cam`` 1.5.7, installed by ``make test``)
and, for what the package does not expose (its reference ranks, explicit per-sample references),
against its formula (shared/PEERS.md section 2) recomputed here.

pytorch-grad-cam's FinerCAM is called as a user calls it, ``FinerCAM(model, layers,
base_method=...)(x, alpha=...)``, on its own deep copy of the model (it sets ``.grad``).
"""
import copy
import importlib.metadata
import sys
import types
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import finercam
from models_for_tests import TinyResNet, TinyViT, images, method_map, seeded

PGC_VERSION = "1.5.7"
# finercam's method -> pytorch-grad-cam's base class: every gradient method both packages have.
BASES = {"gradcam": "GradCAM", "layercam": "LayerCAM", "gradcam++": "GradCAMPlusPlus",
         "xgradcam": "XGradCAM", "hirescam": "HiResCAM"}
LAYER_SETS = [["layer2"], ["layer1", "layer2"]]
ATOL = 1e-5


def _stand_in_torchvision() -> dict:
    """The modules and names pytorch-grad-cam 1.5.7 imports from torchvision, each raising if called."""
    def unused(*args, **kwargs):
        raise NotImplementedError("stand-in torchvision (tests/engine/test_finer_pgc.py): not for use")

    tv = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    ops = types.ModuleType("torchvision.ops")
    transforms.Compose = transforms.Normalize = transforms.ToTensor = unused   # utils/image.py
    functional.resize = unused                                                  # sess.py
    ops.box_iou = unused                                                        # utils/model_targets.py
    tv.transforms, tv.ops, transforms.functional = transforms, ops, functional
    return {"torchvision": tv, "torchvision.transforms": transforms,
            "torchvision.transforms.functional": functional, "torchvision.ops": ops}


@pytest.fixture(scope="module")
def pgc():
    """The installed pytorch-grad-cam, imported over a stand-in ``torchvision``.

    Why a stand-in: the package imports torchvision when it is imported, and torchvision from PyPI
    does not import beside torch 2.13 (its compiled operators are built against another torch).
    The names it takes from there serve helpers that these tests never call (image
    pre-processing, the detection target's ``box_iou``, SESS's resize); the stand-ins raise if
    called. They sit in ``sys.modules`` only while this module's tests run: afterwards
    ``sys.modules`` is restored and the ``pytorch_grad_cam`` modules are dropped, so no other test
    (e.g. transformers' probe for torchvision) sees a torchvision.
    """
    assert importlib.metadata.version("grad-cam") == PGC_VERSION, "make test installs grad-cam==1.5.7"
    with pytest.MonkeyPatch.context() as mp:
        for name, module in _stand_in_torchvision().items():
            mp.setitem(sys.modules, name, module)
        import pytorch_grad_cam   # the test extra + Makefile install it: an ImportError fails, never skips
        yield pytorch_grad_cam
        for name in [n for n in sys.modules if n == "pytorch_grad_cam" or n.startswith("pytorch_grad_cam.")]:
            del sys.modules[name]


def pgc_maps(pgc, model, x, layers, method, reshape=None, **call):
    """pytorch-grad-cam's ``FinerCAM(...)(x, **call)`` on a deep copy of ``model``. No ``with``
    block: its ``__exit__`` swallows an IndexError and the result would silently be None."""
    m = copy.deepcopy(model)
    named = dict(m.named_modules())
    cam = pgc.FinerCAM(m, [named[n] for n in layers], reshape_transform=reshape,
                       base_method=getattr(pgc, BASES[method]))
    try:
        return cam(x, **call)
    finally:
        cam.base_cam.activations_and_grads.release()


def quiet(cam, *args, **kwargs):
    """finercam's call with every warning an error (the normal regime must not warn)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return cam(*args, **kwargs)


def lead_by(net, cls, margin, x):
    """A copy of ``net`` whose class ``cls`` leads every other class by ``margin`` logits or more
    on ``x``: pgc's summed reference probability is then about ``exp(-margin)``."""
    net = copy.deepcopy(net)
    with torch.no_grad():
        y = net(x)
        others = torch.cat([y[:, :cls], y[:, cls + 1:]], 1).amax(1)
        net.fc.bias[cls] += margin + float((others - y[:, cls]).max())
    return net


# -- against the installed package ------------------------------------------------------------

@pytest.mark.parametrize("layers", LAYER_SETS, ids=["one_layer", "two_layers"])
@pytest.mark.parametrize("method", list(BASES))
def test_pgc_matches_package_normal_regime(pgc, method, layers):
    net = seeded(TinyResNet)
    x = images(3)
    want = pgc_maps(pgc, net, x, layers, method, alpha=1.0)
    exp = quiet(finercam.FinerCAM(net, layers, method=method, objective="pgc"), x)
    assert exp.gamma == 1.0
    assert (want.max((1, 2)) > 0.5).all()                  # not a comparison of empty maps
    np.testing.assert_allclose(exp.maps, want, rtol=0, atol=ATOL)


# margin 25: summed reference probability ~1e-11, far below the ~2e-8 where the +1e-9 takes over.
# margin 40: the case; there pgc's Grad-CAM++ map is (almost) all zero: its a =
# g^2 / (2 g^2 + sum(A) g^3 + 1e-6) with g ~ 1e-7 is ~1e-8, and we reproduce that too.
@pytest.mark.parametrize("margin", [25.0, 40.0])
@pytest.mark.parametrize("layers", LAYER_SETS, ids=["one_layer", "two_layers"])
@pytest.mark.parametrize("method", list(BASES))
def test_pgc_matches_package_sign_flip_regime(pgc, method, layers, margin):
    x = images(3)
    net = lead_by(seeded(TinyResNet), 3, margin, x)
    want = pgc_maps(pgc, net, x, layers, method, alpha=1.0, target_idx=3)
    with pytest.warns(RuntimeWarning, match="flips"):
        exp = finercam.FinerCAM(net, layers, method=method, objective="pgc")(x, targets=3)
    np.testing.assert_allclose(exp.maps, want, rtol=0, atol=ATOL)
    if method == "gradcam++" and margin == 40.0:
        assert want.max() < 1e-3
        return
    assert (want.max((1, 2)) > 0.5).all()
    # The paper's objective does not flip: its map differs from pgc's there.
    paper = finercam.FinerCAM(net, layers, method=method, gamma=1.0)(x, targets=3)
    assert np.abs(paper.maps - want).max() > 0.3


@pytest.mark.parametrize("method", ["gradcam", "layercam"])
def test_pgc_options_match_package(pgc, method):
    """alpha = gamma, comparison ranks [1, 2] = num_references=2, a target that is not the top class."""
    net = seeded(TinyResNet)
    x = images(3)
    want = pgc_maps(pgc, net, x, ["layer2"], method, alpha=0.6, target_idx=5, comparison_categories=[1, 2])
    exp = quiet(finercam.FinerCAM(net, "layer2", method=method, gamma=0.6, num_references=2, objective="pgc"),
                x, targets=5)
    np.testing.assert_allclose(exp.maps, want, rtol=0, atol=ATOL)


def test_pgc_on_tokens_matches_package(pgc):
    vit = seeded(TinyViT, registers=0)
    x = images(2)

    def reshape(t):
        return t[:, 1:].reshape(t.shape[0], 8, 8, t.shape[2]).permute(0, 3, 1, 2)

    want = pgc_maps(pgc, vit, x, ["blocks.1"], "gradcam", reshape=reshape, alpha=1.0)
    exp = quiet(finercam.FinerCAM(vit, "blocks.1", objective="pgc", reshape=reshape), x)
    np.testing.assert_allclose(exp.maps, want, rtol=0, atol=ATOL)


def test_pgc_reference_cap_warns_and_matches_package(pgc):
    """pgc clamps its default ranks [1, 2, 3] to the C - 1 = 2 other classes without a word; we
    cap the same way and say so."""
    net = seeded(TinyResNet, num_classes=3)
    x = images(3)
    want = pgc_maps(pgc, net, x, ["layer2"], "gradcam", alpha=1.0)
    with pytest.warns(UserWarning, match="num_references=3, .* using num_references=2"):
        exp = finercam.FinerCAM(net, "layer2", objective="pgc")(x)
    assert exp.references.shape == (3, 2)
    np.testing.assert_allclose(exp.maps, want, rtol=0, atol=ATOL)


def test_pgc_baseline_matches_package_gradcam(pgc):
    """``baseline()`` of a pgc explanation: pgc's plain Grad-CAM of the main class."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    net = seeded(TinyResNet)
    x = images(3)
    exp = finercam.FinerCAM(net, "layer2", objective="pgc")(x)
    m = copy.deepcopy(net)
    cam = pgc.GradCAM(m, [m.layer2])
    try:
        want = cam(x, targets=[ClassifierOutputTarget(int(c)) for c in exp.targets])
    finally:
        cam.activations_and_grads.release()
    np.testing.assert_allclose(exp.baseline().maps, want, rtol=0, atol=ATOL)
    plain = finercam.FinerCAM(net, "layer2", gamma=0.0)(x, targets=exp.targets)
    np.testing.assert_allclose(exp.baseline().raw_maps, plain.raw_maps, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="objective='paper'"):
        exp.recombine(gamma=0.5)


# -- against the formula, for what the package does not expose --------------------------------

def pgc_oracle(model, x, layers, method, alpha=1.0, T=3, main=None, refs=None):
    """pytorch-grad-cam's FinerCAM recomputed: ranks of |y - y_max| (unless ``main``/``refs`` are
    given), the softmax-weighted target with +1e-9, a full backward, per layer relu -> min-max
    (1e-7) -> bilinear resize, then the layer mean -> min-max (1e-7), for one layer too."""
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
        order = np.argsort(np.abs(yd - yd.max(axis=-1)[:, None]), axis=-1, kind="stable")
        main = order[:, 0] if main is None else np.asarray(main)
        refs = order[:, 1:T + 1] if refs is None else np.asarray(refs)
        loss = 0
        for n in range(len(y)):
            prob = torch.softmax(y[n], dim=-1)
            w = [prob[int(i)] for i in refs[n]]
            num = sum(wi * (y[n, int(main[n])] - alpha * y[n, int(i)]) for wi, i in zip(w, refs[n]))
            loss = loss + num / (sum(w) + 1e-9)
        loss.backward()
    for h in hooks:
        h.remove()
    per = []
    for name in layers:
        cam = method_map(method, box[name].detach(), box[name].grad).clamp(min=0)
        cam = cam - cam.amin((1, 2), keepdim=True)
        cam = cam / (1e-7 + cam.amax((1, 2), keepdim=True))
        per.append(F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0])
    out = torch.stack(per).mean(0)
    out = out - out.amin((1, 2), keepdim=True)
    return (out / (1e-7 + out.amax((1, 2), keepdim=True))).numpy(), order


@pytest.mark.parametrize("method,layers", [("gradcam", ["layer2"]), ("gradcam++", ["layer1", "layer2"])])
def test_pgc_reference_ranks_and_formula(method, layers):
    net = seeded(TinyResNet)
    x = images(3)
    exp = quiet(finercam.FinerCAM(net, layers, method=method, objective="pgc"), x)
    want, order = pgc_oracle(net, x, layers, method)
    assert exp.references.tolist() == order[:, 1:4].tolist()
    assert exp.targets.tolist() == order[:, 0].tolist()
    np.testing.assert_allclose(exp.maps, want, rtol=0, atol=ATOL)


def test_pgc_explicit_references_formula():
    """Per-sample explicit references (pgc has none): main class = the target, as given."""
    net = seeded(TinyResNet)
    x = images(3)
    targets, refs = [3, 0, 7], [[1, 2, 5], [4, 9, 3], [0, 8, 2]]
    exp = finercam.FinerCAM(net, "layer2", method="layercam", objective="pgc")(x, targets, refs)
    want, _ = pgc_oracle(net, x, ["layer2"], "layercam", main=targets, refs=refs)
    assert exp.references.tolist() == refs
    np.testing.assert_allclose(exp.maps, want, rtol=0, atol=ATOL)
