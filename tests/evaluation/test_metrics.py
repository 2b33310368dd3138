"""finercam.metrics against plain-torch oracles of the paper's definitions."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from finercam import metrics
from locations import ROOT  # noqa: E402


def tiny_cnn(seed=0, classes=5):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(6, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(32, classes))
    return model.eval()


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    images = torch.randn(4, 3, 10, 12, generator=g)
    maps = torch.rand(4, 10, 12, generator=g)
    maps[0, :3, :3] = 0.5  # ties
    return tiny_cnn(), images, maps


# --- oracles: torch's stable sort, a scatter, a forward ---------------------------------------


def oracle_masked(images, maps, k, baseline):
    n, c, h, w = images.shape
    order = torch.argsort(maps.reshape(n, -1), dim=1, descending=True, stable=True)
    keep = torch.ones(n, h * w)
    keep.scatter_(1, order[:, :k], 0.0)
    keep = keep.reshape(n, 1, h, w)
    return images * keep + baseline * (1 - keep)


def oracle_probs(model, x):
    with torch.no_grad():
        return torch.softmax(model(x).double(), dim=1)


def oracle_nearest(logits, t):
    gap = (logits - logits[torch.arange(len(t)), t][:, None]).abs()
    gap[torch.arange(len(t)), t] = float("inf")
    return torch.tensor([min(range(gap.shape[1]), key=lambda j: (gap[i, j].item(), j))
                         for i in range(len(t))])


def oracle_rd(model, images, maps, t, d, k, baseline=0.0):
    p = oracle_probs(model, images)
    q = oracle_probs(model, oracle_masked(images, maps, k, baseline))
    r = torch.arange(len(t))
    return ((p[r, t] - q[r, t]) - (p[r, d] - q[r, d])).numpy()


# --- relative drop, confidence drop, deletion ------------------------------------------------


def test_relative_drop_equals_eq10_with_explicit_classes(batch):
    model, images, maps = batch
    t, d = torch.tensor([0, 1, 2, 3]), torch.tensor([4, 0, 1, 2])
    for fraction in (0.05, 0.1, 0.5, 1.0):
        k = math.ceil(round(fraction * 120, 6))
        got = metrics.relative_drop(model, images, maps, t, d, fraction=fraction)
        np.testing.assert_allclose(got, oracle_rd(model, images, maps, t, d, k), atol=1e-6)


def test_relative_drop_defaults_predicted_target_and_nearest_logit_class(batch):
    model, images, maps = batch
    with torch.no_grad():
        logits = model(images)
    t = logits.argmax(1)
    d = oracle_nearest(logits, t)
    got = metrics.relative_drop(model, images, maps.numpy())
    np.testing.assert_allclose(got, oracle_rd(model, images, maps, t, d, 6), atol=1e-6)
    np.testing.assert_array_equal(metrics.nearest_logit_class(logits, t), d.numpy())


def test_confidence_drop_is_the_targets_own_drop(batch):
    model, images, maps = batch
    t = torch.tensor([1, 1, 0, 4])
    p, q = oracle_probs(model, images), oracle_probs(model, oracle_masked(images, maps, 12, 0.0))
    want = (p[torch.arange(4), t] - q[torch.arange(4), t]).numpy()
    np.testing.assert_allclose(metrics.confidence_drop(model, images, maps, t, 0.1), want,
                               atol=1e-6)


def test_deletion_curves_and_trapezoid_auc(batch):
    model, images, maps = batch
    t, d = torch.tensor([0, 1, 2, 3]), torch.tensor([1, 2, 3, 4])
    steps = 7
    r = metrics.deletion_auc(model, images, maps, t, steps=steps, compare_to=d)
    curve, ref = [], []
    for k in range(steps + 1):
        q = oracle_probs(model, oracle_masked(images, maps, math.ceil(k * 120 / steps), 0.0))
        curve.append(q[torch.arange(4), t])
        ref.append(q[torch.arange(4), d])
    curve, ref = torch.stack(curve, 1).numpy(), torch.stack(ref, 1).numpy()
    np.testing.assert_allclose(r.curve, curve, atol=1e-6)
    np.testing.assert_allclose(r.reference_curve, ref, atol=1e-6)
    auc = ((curve[:, 1:] + curve[:, :-1]) / 2).sum(1) / steps
    np.testing.assert_allclose(r.auc, auc, atol=1e-6)
    np.testing.assert_allclose(r.reference_auc, ((ref[:, 1:] + ref[:, :-1]) / 2).sum(1) / steps,
                               atol=1e-6)
    assert r.counts.tolist() == [math.ceil(k * 120 / steps) for k in range(steps + 1)]
    np.testing.assert_allclose(r.fractions, np.arange(steps + 1) / steps)


def test_baselines_mean_blur_and_array(batch):
    model, images, maps = batch
    t, d = torch.tensor([0, 1, 2, 3]), torch.tensor([4, 0, 1, 2])
    mean = images.mean(dim=(2, 3), keepdim=True)
    np.testing.assert_allclose(metrics.relative_drop(model, images, maps, t, d, 0.2, "mean"),
                               oracle_rd(model, images, maps, t, d, 24, mean), atol=1e-6)
    # the blur oracle: a depthwise torch convolution with a replicate-padded Gaussian
    s = metrics.BLUR_SIGMA
    r = math.ceil(3 * s)
    g = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float64) / s) ** 2)
    g = (g / g.sum()).float()
    x = F.pad(images, (r, r, r, r), mode="replicate")
    x = F.conv2d(x, g.view(1, 1, 1, -1).repeat(3, 1, 1, 1), groups=3)
    blurred = F.conv2d(x, g.view(1, 1, -1, 1).repeat(3, 1, 1, 1), groups=3)
    np.testing.assert_allclose(metrics.relative_drop(model, images, maps, t, d, 0.2, "blur"),
                               oracle_rd(model, images, maps, t, d, 24, blurred), atol=1e-5)
    value = torch.tensor([0.5, -1.0, 2.0]).view(1, 3, 1, 1)
    np.testing.assert_allclose(metrics.relative_drop(model, images, maps, t, d, 0.2, value),
                               oracle_rd(model, images, maps, t, d, 24, value), atol=1e-6)


def test_evaluate_maps_shares_forwards_and_matches_the_single_metrics(batch, monkeypatch):
    model, images, maps = batch
    calls = []

    def counting(x):
        calls.append(x.shape[0])
        return model(x)

    t = torch.tensor([0, 1, 2, 3])
    masks = torch.zeros(4, 10, 12, dtype=torch.bool)
    masks[:, 2:6, 3:9] = True
    out = metrics.evaluate_maps(counting, images, maps, t, fractions=(0.05, 0.1), steps=20,
                                masks=masks)
    # 1 unmasked forward + 20 masked steps; RD@0.05 and RD@0.1 reuse steps 1 and 2 (6 and 12 px)
    assert sum(calls) == 21 * 4 and calls[0] == 4
    d = out["compare_to"]
    np.testing.assert_allclose(out["rd@0.05"], metrics.relative_drop(model, images, maps, t, d),
                               atol=1e-12)
    np.testing.assert_allclose(out["drop@0.1"], metrics.confidence_drop(model, images, maps, t, 0.1),
                               atol=1e-12)
    np.testing.assert_allclose(out["deletion"], metrics.deletion_auc(model, images, maps, t).auc,
                               atol=1e-12)
    np.testing.assert_allclose(out["energy"], metrics.energy_in_mask(maps, masks))
    np.testing.assert_array_equal(out["pointing"], metrics.pointing_game(maps, masks))
    calls.clear()
    metrics.relative_drop(counting, images, maps, t, d, fraction=0.1)
    assert calls == [4, 4]  # unmasked + masked: two batched forwards


def test_chunking_and_small_buffers_give_the_same_numbers(batch, monkeypatch):
    model, images, maps = batch
    full = metrics.deletion_auc(model, images, maps, steps=5)
    monkeypatch.setattr(metrics, "BUFFER_BYTES", 1)
    small = metrics.deletion_auc(model, images, maps, steps=5, batch_size=3)
    np.testing.assert_allclose(small.curve, full.curve, atol=1e-6)


def test_top_count_rule():
    assert metrics.top_count(0.1, 100) == 10
    assert metrics.top_count(0.05, 224 * 224) == 2509
    assert metrics.top_count(np.float32(0.1), 100) == 10
    assert metrics.top_count(1e-9, 100) == 1
    assert metrics.top_count(1.0, 7) == 7


# --- localisation ------------------------------------------------------------------------------


def test_energy_and_pointing_with_boxes_by_hand():
    maps = np.zeros((2, 4, 5), np.float32)
    maps[0, 1, 2], maps[0, 3, 4] = 3.0, 1.0
    maps[1] = 1.0
    boxes = np.array([[1, 0, 4, 2], [0, 0, 5, 2]])  # x0, y0, x1, y1
    np.testing.assert_allclose(metrics.energy_in_mask(maps, boxes), [0.75, 0.5])
    assert metrics.pointing_game(maps, boxes).tolist() == [True, True]
    masks = metrics.boxes_to_masks(boxes, (4, 5))
    assert masks[0].astype(int).tolist() == [[0, 1, 1, 1, 0]] * 2 + [[0] * 5] * 2
    # float boxes cover the pixels whose centres they contain
    assert metrics.boxes_to_masks([[0.4, 0, 1.5, 1]], (1, 3)).tolist() == [[[True, False, False]]]
    e = metrics.energy_in_mask(np.zeros((1, 4, 5)), boxes[:1])
    assert np.isnan(e[0])


def test_localisation_bad_input():
    maps = np.ones((2, 4, 5), np.float32)
    with pytest.raises(ValueError, match="boxes"):
        metrics.energy_in_mask(maps, [[0, 0, 6, 2], [0, 0, 1, 1]])
    with pytest.raises(ValueError, match="boxes"):
        metrics.pointing_game(maps, [[2, 0, 2, 2], [0, 0, 1, 1]])
    with pytest.raises(ValueError, match="masks"):
        metrics.energy_in_mask(maps, np.ones((2, 4, 4), bool))
    with pytest.raises(ValueError, match="one row per map"):
        metrics.energy_in_mask(maps, [[0, 0, 1, 1]])
    with pytest.raises(ValueError, match="non-negative"):
        metrics.energy_in_mask(-maps, np.ones((2, 4, 5), bool))
    with pytest.raises(ValueError, match="maps"):
        metrics.pointing_game(np.full((2, 4, 5), np.nan), np.ones((2, 4, 5), bool))


# --- bad input and the model's state ------------------------------------------------------------


def test_bad_input_is_a_clear_error(batch):
    model, images, maps = batch
    t = [0, 1, 2, 3]
    for f in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="fraction"):
            metrics.relative_drop(model, images, maps, t, fraction=f)
    with pytest.raises(TypeError, match="fraction"):
        metrics.relative_drop(model, images, maps, t, fraction=True)
    with pytest.raises(ValueError, match="steps"):
        metrics.deletion_auc(model, images, maps, t, steps=0)
    with pytest.raises(TypeError, match="steps"):
        metrics.deletion_auc(model, images, maps, t, steps=2.0)
    with pytest.raises(ValueError, match="maps"):
        metrics.relative_drop(model, images, maps[:, :5], t)
    with pytest.raises(ValueError, match="maps"):
        metrics.relative_drop(model, images, maps[:3], t)
    bad = maps.clone()
    bad[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="maps"):
        metrics.relative_drop(model, images, bad, t)
    with pytest.raises(ValueError, match="compare_to"):
        metrics.relative_drop(model, images, maps, t, compare_to=[1, 1, 1, 1])
    with pytest.raises(ValueError, match="targets"):
        metrics.relative_drop(model, images, maps, [0, 1, 2, 5])
    with pytest.raises(ValueError, match="targets"):
        metrics.relative_drop(model, images, maps, [0, 1])
    with pytest.raises(TypeError, match="targets"):
        metrics.relative_drop(model, images, maps, [0.0, 1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="baseline"):
        metrics.relative_drop(model, images, maps, t, baseline="noise")
    with pytest.raises(TypeError, match="images"):
        metrics.relative_drop(model, images.numpy(), maps, t)


def test_the_model_leaves_as_it_came(batch):
    model, images, maps = batch
    model.train()
    model[0].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    metrics.deletion_auc(model, images, maps, steps=3)
    metrics.relative_drop(model, images, maps)
    assert model.training and all(m.training for m in model.modules())
    assert not model[0].weight.requires_grad and model[2].weight.requires_grad
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert torch.is_grad_enabled()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_metrics_on_cuda_equal_cpu(batch):
    model, images, maps = batch
    t = torch.tensor([0, 1, 2, 3])
    cpu = metrics.evaluate_maps(model, images, maps, t, steps=5)
    gpu = metrics.evaluate_maps(model.cuda(), images.cuda(), maps.cuda(), t.cuda(), steps=5)
    for key in ("rd@0.05", "rd@0.1", "deletion", "drop@0.05"):
        np.testing.assert_allclose(gpu[key], cpu[key], atol=1e-5)


def test_readme_metrics_block_runs():
    """The README's "Evaluating on your data" Python block runs and gives per-image numbers."""
    import pathlib
    import re

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Evaluating on your data"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    env: dict = {}
    exec(compile(code, "README.md", "exec"), env)
    assert env["rd"].shape == (4,) and env["deletion"].curve.shape == (4, 21)
    assert np.all((env["loc"] >= 0) & (env["loc"] <= 1))
