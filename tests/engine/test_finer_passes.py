"""Two backward passes by default (issue 25): the maps of the two-pass store against the per-class
store (``candidates=``) and against full autograd of ``y_c - gamma mean_t y_t`` (the oracles of
models_for_tests); what ``recombine`` refuses and the option its error names; the number of
backward passes; the bytes a call brings to the host, counted by intercepting every copy."""
import numpy as np
import pytest
import torch
from models_for_tests import TinyResNet, TinyViT, images, oracle_gradient_method, seeded

import finercam
from finercam import _host

TARGETS = [3, 0, 7]
REFS = [[1, 2, 5], [4, 9, 3], [0, 8, 2]]
GRADIENT_METHODS = ["gradcam", "layercam", "gradcam++", "xgradcam", "hirescam"]
SETTINGS = [(0.6, False), (1.7, False), (0.4, True), (0.0, False)]   # (gamma, reverse)


# cnn, vit: the shared fixtures of tests/engine/conftest.py


def _close(got, want):
    want = np.asarray(want)
    scale = max(float(np.abs(want).max()), 1e-6)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * scale)


@pytest.mark.parametrize("method", GRADIENT_METHODS)
@pytest.mark.parametrize("arch", ["cnn", "vit"])
def test_two_pass_maps_equal_per_class_and_autograd(cnn, vit, method, arch):
    """Every gamma, the reverse comparison and the base map from the two stored gradients equal
    the per-class store's maps and a full backward of the objective itself."""
    net, layer, prefix = (cnn, "layer2", 0) if arch == "cnn" else (vit, "blocks.1.norm1", 3)
    x = images()
    two = finercam.FinerCAM(net, layer, method=method)(x, TARGETS, REFS)
    per = finercam.FinerCAM(net, layer, method=method, candidates=10)(x, TARGETS, REFS)
    assert two.mean_references is not None and two.mean_references.tolist() == REFS and two.candidates.tolist() == [[t] for t in TARGETS]
    assert per.mean_references is None and per.candidates.shape == (3, 10)
    for gamma, reverse in SETTINGS:
        a = two.recombine(gamma=gamma, reverse=reverse)
        b = per.recombine(gamma=gamma, reverse=reverse)
        raw, maps = oracle_gradient_method(net, x, layer, method, TARGETS, REFS, gamma, "mean", reverse, prefix)
        for e in (a, b):
            _close(e.raw_maps, raw.numpy())
            np.testing.assert_allclose(e.maps, maps.numpy(), rtol=0, atol=5e-4)
        _close(a.raw_maps, b.raw_maps)
    raw, maps = oracle_gradient_method(net, x, layer, method, TARGETS, REFS, 0.0, "mean", False, prefix)
    _close(two.baseline().raw_maps, raw.numpy())
    np.testing.assert_allclose(two.baseline().maps, per.baseline().maps, rtol=0, atol=1e-5)


def test_two_pass_multi_layer_and_reference_order(cnn):
    """Several layers, and the stored reference set recombined in another order (the mean is
    the same), equal the per-class store."""
    x = images()
    two = finercam.FinerCAM(cnn, ["layer1", "layer2"], method="layercam", gamma=0.9)(x, TARGETS, REFS)
    per = finercam.FinerCAM(cnn, ["layer1", "layer2"], method="layercam", gamma=0.9, candidates=3)(x, TARGETS, REFS)
    np.testing.assert_allclose(two.maps, per.maps, rtol=0, atol=1e-5)
    shuffled = [r[::-1] for r in REFS]
    np.testing.assert_allclose(two.recombine(references=shuffled).maps, per.maps, rtol=0, atol=1e-5)


def test_default_refs_chosen_by_the_rule(cnn):
    """No references given: the rule's references, and the two-pass map equals the oracle's."""
    x = images()
    exp = finercam.FinerCAM(cnn, "layer2")(x)
    per = finercam.FinerCAM(cnn, "layer2", candidates=10)(x)
    assert exp.references.tolist() == per.references.tolist()
    raw, _ = oracle_gradient_method(cnn, x, "layer2", "gradcam", exp.targets.tolist(), exp.references.tolist(),
                                    0.6, "mean")
    _close(exp.raw_maps, raw.numpy())


def test_recombine_outside_the_store_names_the_option(cnn):
    exp = finercam.FinerCAM(cnn, "layer2")(images(), TARGETS, REFS)
    with pytest.raises(ValueError, match=r"references\[0\] = \[1\].*candidates=K"):
        exp.recombine(references=[[1], [4], [0]])
    with pytest.raises(ValueError, match=r"aggregate='max' needs each reference's own gradient.*candidates=K"):
        exp.recombine(aggregate="max")
    with pytest.raises(ValueError, match="candidates="):
        exp.to_html()
    assert "candidates=10" in exp._repr_html_()
    d = exp.diagnose(cnn.fc)                          # what needs no per-reference gradient
    assert np.isnan(d.per_reference_mass).all() and np.isfinite(d.reference_mass).all()


class _CountGrad:
    """Counts calls of torch.autograd.grad (one backward pass each)."""

    def __init__(self, monkeypatch):
        self.calls = 0
        real = torch.autograd.grad

        def counting(*a, **kw):
            self.calls += 1
            return real(*a, **kw)

        monkeypatch.setattr(torch.autograd, "grad", counting)


@pytest.mark.parametrize("kw,passes", [
    ({}, 2),                                   # the target, the references' mean
    ({"num_references": 1}, 2),                # the target, the one reference
    ({"aggregate": "max"}, 4),                 # the target and each of 3 references
    ({"aggregate": "mean_after_relu"}, 4),
    ({"candidates": 1}, 4),                    # the references one by one
    ({"candidates": 10}, 10),                  # all 9 other classes (C = 10) and the target
    ({"objective": "pgc"}, 3),                 # pgc's objective and its main class, and its direction
                                               # dL/dy (an autograd call on the logits alone)
    ({"method": "scorecam"}, 0),
    ({"method": "cam"}, 0),
])
def test_backward_passes_counted(cnn, monkeypatch, kw, passes):
    count = _CountGrad(monkeypatch)
    finercam.FinerCAM(cnn, "layer2", score_budget_mb=1.0, **kw)(images(2))
    assert count.calls == passes


class _CountCopies:
    """Wraps finercam._host.to_host, the one door to the host, and every other way a tensor
    becomes host data (Tensor.numpy, .cpu, .tolist, .item) to catch copies that bypass it."""

    def __init__(self, monkeypatch):
        self.bytes, self._inside = 0, False
        self.arrays: list = []
        self.bypass: list = []
        real = _host.to_host

        def wrapped(t):
            self._inside = True
            try:
                arr = real(t)
            finally:
                self._inside = False
            self.bytes += arr.nbytes
            self.arrays.append(arr.shape)
            return arr

        monkeypatch.setattr(_host, "to_host", wrapped)
        for name in ("numpy", "cpu", "tolist", "item"):
            orig = getattr(torch.Tensor, name)

            def spy(t, *a, _orig=orig, _name=name, **k):
                if not self._inside:
                    self.bypass.append((_name, tuple(t.shape)))
                return _orig(t, *a, **k)

            monkeypatch.setattr(torch.Tensor, name, spy)


@pytest.mark.parametrize("method,kw,per_class", [
    ("gradcam", {}, lambda N, K, h, w: 2 * N * K),               # two (N, K) means
    ("xgradcam", {}, lambda N, K, h, w: 2 * N * K),
    ("hirescam", {}, lambda N, K, h, w: 2 * N * h * w),          # two (N, h, w) maps
    ("layercam", {}, lambda N, K, h, w: 2 * N * K * h * w),      # two full gradients
    ("gradcam", {"candidates": 10}, lambda N, K, h, w: 10 * N * K),
    ("cam", {}, lambda N, K, h, w: 10 * N * K),                  # the 10 stored classifier rows
])
def test_host_bytes_counted_by_intercepting_copies(cnn, monkeypatch, method, kw, per_class):
    x = images(2)
    N, C, K, h, w = 2, 10, 16, 8, 8                              # TinyResNet layer2 at 32 x 32
    copies = _CountCopies(monkeypatch)
    exp = finercam.FinerCAM(cnn, "layer2", method=method, **kw)(x, [3, 0])
    assert copies.bypass == []
    want = 4 * (N * C + N * K * h * w + per_class(N, K, h, w))   # float32: logits, activations, stats
    assert copies.bytes == exp.host_bytes == want, copies.arrays


def test_host_bytes_vit_tokens(vit, monkeypatch):
    """Tokens: the activations cross at the patch grid (register and class tokens dropped on the
    device), the gradients as Grad-CAM's (N, D) means."""
    copies = _CountCopies(monkeypatch)
    exp = finercam.FinerCAM(vit, "blocks.1.norm1")(images(2), [3, 0])
    N, C, D, h, w = 2, 10, 16, 8, 8
    assert copies.bypass == []
    assert copies.bytes == exp.host_bytes == 4 * (N * C + N * D * h * w + 2 * N * D)


def test_device_statistic_equals_numpy_twin():
    """The device reductions against the NumPy statistics of methods.class_statistic."""
    from finercam.methods import class_statistic, device_statistic

    g = torch.Generator().manual_seed(5)
    A = torch.rand(2, 6, 5, 4, generator=g)
    G = torch.randn(2, 6, 5, 4, generator=g)
    for method in GRADIENT_METHODS:
        got = device_statistic(method, A, G).float().numpy()
        want = class_statistic(method, A.numpy(), G.numpy())
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_cuda_two_pass_copies_the_statistics_only(cnn, monkeypatch, method):
    """On CUDA the statistics are reduced on the device: the same bytes cross as counted on the
    CPU, every copy through to_host, and the maps equal the CPU's."""
    x = images(2)
    cpu = finercam.FinerCAM(cnn, "layer2", method=method)(x, [3, 0])
    gpu_net = seeded(TinyResNet).cuda()
    copies = _CountCopies(monkeypatch)
    gpu = finercam.FinerCAM(gpu_net, "layer2", method=method)(x.cuda(), [3, 0])
    assert copies.bypass == []
    assert copies.bytes == gpu.host_bytes == cpu.host_bytes
    np.testing.assert_allclose(gpu.maps, cpu.maps, atol=2e-3)
