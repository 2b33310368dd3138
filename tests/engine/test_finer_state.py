"""The user's model leaves FinerCAM as it came: hooks, grad mode, training flags, .grad, memory."""
import gc

import numpy as np
import pytest
import torch
from torch import nn

import finercam
from models_for_tests import MiniNet, TinyResNet, TinyViT, images, seeded


def hook_counts(model):
    return [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
            for m in model.modules()]


def snapshot(model):
    return {
        "hooks": hook_counts(model),
        "training": [m.training for m in model.modules()],
        "grads": [(p.grad if p.grad is None else (id(p.grad), p.grad.clone())) for p in model.parameters()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "buffers": [b.clone() for b in model.buffers()],
        "grad_mode": torch.is_grad_enabled(),
    }


def assert_same(before, after):
    assert after["hooks"] == before["hooks"]
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert after["grad_mode"] == before["grad_mode"]
    for b, a in zip(before["grads"], after["grads"]):
        if b is None:
            assert a is None
        else:
            assert a[0] == b[0] and torch.equal(a[1], b[1])
    for b, a in zip(before["buffers"], after["buffers"]):
        assert torch.equal(a, b)


def user_model():
    """A model in training mode (one submodule in eval), with a user hook and some .grad set."""
    m = seeded(TinyResNet).train()
    m.layer1.eval()
    m.fc.weight.grad = torch.full_like(m.fc.weight, 0.25)
    m.stem[0].register_forward_hook(lambda *a: None)
    return m


@pytest.mark.parametrize("method,grad_mode", [
    ("gradcam", "enabled"), ("gradcam", "no_grad"), ("gradcam", "inference_mode"),
    ("layercam", "no_grad"), ("scorecam", "enabled"), ("scorecam", "inference_mode"), ("cam", "no_grad")])
def test_state_restored_after_call(method, grad_mode):
    m = user_model()
    layers = "layer2" if method == "cam" else ["layer1", "layer2"]
    ctx = {"enabled": torch.enable_grad(), "no_grad": torch.no_grad(),
           "inference_mode": torch.inference_mode()}[grad_mode]
    with ctx:
        before = snapshot(m)
        exp = finercam.FinerCAM(m, layers, method=method)(images(2))
        assert_same(before, snapshot(m))
        assert torch.is_inference_mode_enabled() == (grad_mode == "inference_mode")
    ref = finercam.FinerCAM(seeded(TinyResNet), layers, method=method)(images(2))
    np.testing.assert_allclose(exp.maps, ref.maps, atol=1e-6)   # explained in eval mode


class Exploding(nn.Module):
    def __init__(self, net, when):
        super().__init__()
        self.net, self.when = net, when

    def forward(self, x):
        y = self.net(x)
        if self.when == "forward":
            raise RuntimeError("boom after the target layer")
        return y


@pytest.mark.parametrize("case", ["forward", "bad_target", "bad_refs", "nan", "unreached", "bad_layer_output"])
def test_state_restored_after_exception(case):
    m = user_model()
    wrapped = Exploding(m, case)
    x = images(2)
    layer, kwargs, error = "net.layer2", {}, ValueError
    if case == "forward":
        error = RuntimeError
    elif case == "bad_target":
        kwargs = {"targets": [0, 99]}
    elif case == "bad_refs":
        kwargs = {"references": [[1, 1], [2, 3]]}
    elif case == "nan":
        x[0, 0, 0, 0] = float("nan")
    elif case == "unreached":
        m.extra = nn.Conv2d(3, 3, 1)
        layer = "net.extra"
    else:
        layer = "net.fc"     # a 2-D output
    before = snapshot(wrapped)
    with pytest.raises(error) as info:
        finercam.FinerCAM(wrapped, layer)(x, **kwargs)
    assert_same(before, snapshot(wrapped))
    assert live_tensors()[1] == 0, "the exception keeps an autograd graph alive"
    del info


def test_frozen_parameters_same_maps():
    m = seeded(TinyViT)
    x = images(2)
    ref = finercam.FinerCAM(m, "blocks.1", method="layercam")(x)
    for p in m.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        exp = finercam.FinerCAM(m, "blocks.1", method="layercam")(x)
    np.testing.assert_allclose(exp.maps, ref.maps, atol=1e-6)
    assert all(p.grad is None for p in m.parameters())


def live_tensors():
    gc.collect()
    count, with_graph = 0, 0
    for o in gc.get_objects():
        try:
            if issubclass(type(o), torch.Tensor):
                count += 1
                with_graph += o.grad_fn is not None
        except ReferenceError:
            pass
    return count, with_graph


@pytest.mark.parametrize("method", ["gradcam", "scorecam"])
def test_no_memory_growth_over_200_calls(method):
    m = seeded(MiniNet)
    cam = finercam.FinerCAM(m, "act", method=method, candidates=2)
    x = images(1, size=(8, 8))
    for _ in range(3):
        cam(x)
    before = live_tensors()
    for _ in range(200):
        exp = cam(x)
    del exp
    after = live_tensors()
    assert after == before
    assert after[1] == 0       # no autograd graph survives a call


def test_no_graph_before_the_target_layer():
    """The layers before the tap run without autograd even when the caller's grad mode is on and
    every parameter requires grad; the layers after it record the (small) graph."""
    m = seeded(TinyResNet)
    seen = {}
    for name in ("stem", "layer1", "layer2", "pool", "fc"):
        getattr(m, name).register_forward_hook(
            lambda mod, i, o, name=name: seen.__setitem__(name, (o.requires_grad, torch.is_grad_enabled())))
    with torch.enable_grad():
        finercam.FinerCAM(m, "layer1")(images(1))
    assert seen["stem"] == (False, False)
    assert seen["layer1"] == (False, False)      # our hook runs after the user's
    assert seen["layer2"][0] and seen["pool"][0] and seen["fc"][0]
    assert all(p.grad is None for p in m.parameters())
