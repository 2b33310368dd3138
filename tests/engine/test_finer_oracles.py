"""FinerCAM against the paper's equations recomputed with plain torch autograd (models_for_tests)."""
import numpy as np
import pytest
import torch

import finercam
from models_for_tests import (TinyResNet, TinyViT, images, oracle_gradient_method, oracle_scorecam,
                              seeded)

TARGETS = [3, 0, 7]
REFS = [[1, 2, 5], [4, 9, 3], [0, 8, 2]]
GRADIENT_METHODS = ["gradcam", "layercam", "gradcam++", "xgradcam", "hirescam"]


def assert_maps(exp, raw, maps):
    raw = raw.numpy()
    scale = max(float(np.abs(raw).max()), 1e-6)
    np.testing.assert_allclose(exp.raw_maps, raw, rtol=0, atol=2e-5 * scale)
    np.testing.assert_allclose(exp.maps, maps.numpy(), rtol=0, atol=5e-4)
    assert exp.maps.dtype == np.float32 and exp.raw_maps.dtype == np.float32


# cnn, vit: the shared fixtures of tests/engine/conftest.py


@pytest.mark.parametrize("method", GRADIENT_METHODS)
@pytest.mark.parametrize("aggregate", ["mean", "max", "mean_after_relu"])
def test_gradient_methods_cnn(cnn, method, aggregate):
    x = images()
    exp = finercam.FinerCAM(cnn, "layer2", method=method, gamma=0.6, aggregate=aggregate)(x, TARGETS, REFS)
    raw, maps = oracle_gradient_method(cnn, x, "layer2", method, TARGETS, REFS, 0.6, aggregate)
    assert_maps(exp, raw, maps)


@pytest.mark.parametrize("method", GRADIENT_METHODS)
@pytest.mark.parametrize("aggregate", ["mean", "max", "mean_after_relu"])
def test_gradient_methods_vit_tokens(vit, method, aggregate):
    x = images()
    exp = finercam.FinerCAM(vit, "blocks.1.norm1", method=method, gamma=1.5, aggregate=aggregate)(x, TARGETS, REFS)
    raw, maps = oracle_gradient_method(vit, x, "blocks.1.norm1", method, TARGETS, REFS, 1.5, aggregate, prefix=3)
    assert_maps(exp, raw, maps)


@pytest.mark.parametrize("aggregate", ["mean", "max"])
def test_reverse_comparison(cnn, aggregate):
    x = images()
    exp = finercam.FinerCAM(cnn, "layer2", gamma=0.8, aggregate=aggregate, reverse=True)(x, TARGETS, REFS)
    raw, maps = oracle_gradient_method(cnn, x, "layer2", "gradcam", TARGETS, REFS, 0.8, aggregate, reverse=True)
    assert_maps(exp, raw, maps)


@pytest.mark.parametrize("aggregate", ["mean", "max", "mean_after_relu"])
def test_scorecam_cnn(cnn, aggregate):
    x = images(2)
    # 0.1 MiB: 8 masked 32 x 32 inputs per chunk, 4 chunks for 2 images x 16 channels.
    cam = finercam.FinerCAM(cnn, "layer2", method="scorecam", aggregate=aggregate, score_budget_mb=0.1)
    exp = cam(x, TARGETS[:2], REFS[:2])
    raw, maps = oracle_scorecam(cnn, x, "layer2", TARGETS[:2], REFS[:2], 0.6, aggregate)
    assert_maps(exp, raw, maps)


def test_scorecam_vit_reverse(vit):
    x = images(2)
    exp = finercam.FinerCAM(vit, "blocks.0", method="scorecam", reverse=True, gamma=0.5)(x, TARGETS[:2], REFS[:2])
    raw, maps = oracle_scorecam(vit, x, "blocks.0", TARGETS[:2], REFS[:2], 0.5, "mean", reverse=True, prefix=3)
    assert_maps(exp, raw, maps)


def test_cam_uses_classifier_rows(cnn):
    """CAM: alpha^c = w_c of the final linear layer; at the last conv layer with GAP this is
    Grad-CAM's alpha times the grid size (Eq. 4)."""
    x = images()
    exp = finercam.FinerCAM(cnn, "layer2", method="cam", aggregate="max")(x, TARGETS, REFS)
    grad = finercam.FinerCAM(cnn, "layer2", method="gradcam", aggregate="max")(x, TARGETS, REFS)
    np.testing.assert_allclose(exp.raw_maps, grad.raw_maps * 64, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(exp.maps, grad.maps, atol=1e-4)


@pytest.mark.parametrize("method", ["gradcam", "layercam", "scorecam", "hirescam"])
def test_recombine_equals_fresh_call(cnn, method):
    x = images()
    kw = dict(method=method, score_budget_mb=1.0, candidates=10)
    exp = finercam.FinerCAM(cnn, "layer2", **kw)(x, TARGETS, REFS)
    for gamma, refs, agg, rev in [(0.0, None, "mean", False), (2.0, [[2], [9], [8]], "max", False),
                                  (0.3, [[5, 1], [3, 4], [2, 0]], "mean_after_relu", True)]:
        re = exp.recombine(gamma=gamma, references=refs, aggregate=agg, reverse=rev)
        fresh = finercam.FinerCAM(cnn, "layer2", gamma=gamma, aggregate=agg, reverse=rev, **kw)(
            x, TARGETS, refs if refs is not None else REFS)
        np.testing.assert_allclose(re.raw_maps, fresh.raw_maps, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(re.maps, fresh.maps, atol=1e-5)
        assert re.references.tolist() == (refs if refs is not None else REFS)


def test_baseline_is_plain_method(cnn):
    x = images()
    exp = finercam.FinerCAM(cnn, "layer2", method="layercam", aggregate="max")(x, TARGETS, REFS)
    raw, maps = oracle_gradient_method(cnn, x, "layer2", "layercam", TARGETS, REFS, 0.0, "mean")
    assert_maps(exp.baseline(), raw, maps)
    assert exp.baseline().gamma == 0.0


def test_recombine_outside_stored_set_is_value_error(cnn):
    exp = finercam.FinerCAM(cnn, "layer2", candidates=3)(images(), TARGETS, REFS)
    assert exp.candidates.shape == (3, 4)
    stored = set(exp.candidates[0].tolist())
    outside = next(c for c in range(10) if c not in stored)
    with pytest.raises(ValueError, match="not stored"):
        exp.recombine(references=[[outside], [4], [0]])


def test_default_candidates_all_classes_when_few(cnn):
    exp = finercam.FinerCAM(cnn, "layer2", candidates=10)(images())
    assert exp.candidates.shape == (3, 10)
    for n in range(3):
        assert sorted(exp.candidates[n].tolist()) == list(range(10))
        assert exp.candidates[n, 0] == exp.targets[n]


def test_multi_layer_fusion(cnn):
    x = images()
    exp = finercam.FinerCAM(cnn, ["layer1", "layer2"])(x, TARGETS, REFS)
    per = [finercam.FinerCAM(cnn, name)(x, TARGETS, REFS) for name in ("layer1", "layer2")]
    fused = np.mean([p.maps.astype(np.float64) for p in per], axis=0)
    lo = fused.min(axis=(1, 2), keepdims=True)
    hi = fused.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(exp.maps, (fused - lo) / (hi - lo + 1e-8), atol=1e-5)
    np.testing.assert_allclose(exp.layer_raw_maps[1], per[1].raw_maps, rtol=1e-5, atol=1e-7)
    assert exp.raw_maps.shape == (3, 16, 16)


def test_extrapolation_gamma_two(vit):
    x = images()
    exp = finercam.FinerCAM(vit, "blocks.1", gamma=2.0)(x, TARGETS, REFS)
    raw, maps = oracle_gradient_method(vit, x, "blocks.1", "gradcam", TARGETS, REFS, 2.0, "mean", prefix=3)
    assert_maps(exp, raw, maps)


def test_logits_and_targets_reported(cnn):
    x = images()
    exp = finercam.FinerCAM(cnn, "layer2")(x)
    with torch.no_grad():
        y = cnn(x).numpy()
    np.testing.assert_allclose(exp.logits, y, rtol=1e-5, atol=1e-6)
    assert exp.targets.tolist() == y.argmax(1).tolist()
    assert exp.targets.dtype == np.int64 and exp.references.dtype == np.int64


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=12)
@given(gamma=st.floats(0.0, 3.0), aggregate=st.sampled_from(["mean", "max", "mean_after_relu"]),
       reverse=st.booleans(), method=st.sampled_from(["gradcam", "layercam", "hirescam"]),
       subset=st.lists(st.integers(0, 2), min_size=1, max_size=3, unique=True))
def test_recombine_matches_paper_equations(cnn, gamma, aggregate, reverse, method, subset):
    """One call, then any gamma / reference subset / aggregation / direction by recombination,
    against the equations recomputed from scratch."""
    x = images()
    exp = _cached_call(cnn, method)
    refs = [[row[i] for i in subset] for row in REFS]
    re = exp.recombine(gamma=gamma, references=refs, aggregate=aggregate, reverse=reverse)
    raw, maps = oracle_gradient_method(cnn, x, "layer2", method, TARGETS, refs, gamma, aggregate, reverse)
    assert_maps(re, raw, maps)


_CALLS = {}


def _cached_call(cnn, method):
    if method not in _CALLS:
        _CALLS[method] = finercam.FinerCAM(cnn, "layer2", method=method, candidates=10)(images(), TARGETS, REFS)
    return _CALLS[method]


def test_binary_classifier_single_image():
    net = seeded(TinyResNet, num_classes=2)
    x = images(1)
    with pytest.warns(UserWarning, match="num_references=3, .* using num_references=1"):
        exp = finercam.FinerCAM(net, "layer2", num_references=3)(x)
    assert exp.references.tolist() == [[1 - int(exp.targets[0])]]
    raw, maps = oracle_gradient_method(net, x, "layer2", "gradcam", exp.targets.tolist(),
                                       exp.references.tolist(), 0.6, "mean")
    assert_maps(exp, raw, maps)
