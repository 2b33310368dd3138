"""Model-parameter randomisation (finercam.metrics.sanity): SSIM against scikit-image, Spearman
against SciPy, the model left untouched, and the verdicts: an edge detector (a map that ignores
the weights) fails, Grad-CAM and Finer on the embedded CNN pass."""
import copy
import json

import numpy as np
import pytest
import scipy.stats
import torch
from skimage.metrics import structural_similarity
from torch import nn

from finercam import _twins, kernels, metrics


def tiny_cnn(seed=0, classes=5):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1),
        nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, classes)).eval()


# --- the measures against independent implementations ---------------------------------------------


@pytest.mark.parametrize("shape,win", [((3, 20, 24), 7), ((2, 7, 9), 7), ((2, 11, 5), 5), ((1, 3, 3), 3)])
def test_ssim_equals_scikit_image(shape, win):
    rng = np.random.default_rng(0)
    a = rng.random(shape, dtype=np.float32)
    b = np.clip(a + 0.3 * rng.standard_normal(shape).astype(np.float32), 0, 1)
    got = kernels.ssim(a, b, win=win, data_range=1.0)
    want = [structural_similarity(a[i].astype(np.float64), b[i].astype(np.float64), win_size=win,
                                  data_range=1.0) for i in range(shape[0])]
    np.testing.assert_allclose(got, want, atol=1e-9)
    np.testing.assert_allclose(got, _twins.ssim(a, b, win), atol=1e-9)
    np.testing.assert_allclose(kernels.ssim(a, a, win=win), 1.0, atol=1e-12)
    np.testing.assert_allclose(kernels.ssim(2 * a, 2 * b, win=win, data_range=2.0), got, atol=1e-9)


def test_ssim_bad_arguments():
    a = np.zeros((1, 8, 8), np.float32)
    with pytest.raises(ValueError, match="win"):
        kernels.ssim(a, a, win=4)
    with pytest.raises(ValueError, match="win"):
        kernels.ssim(a, a, win=9)
    with pytest.raises(TypeError, match="win"):
        kernels.ssim(a, a, win=7.0)
    with pytest.raises(ValueError, match="win"):
        kernels.ssim(a, a, win=2**40)
    with pytest.raises(ValueError, match="data_range"):
        kernels.ssim(a, a, data_range=0.0)
    with pytest.raises(ValueError, match="b"):
        kernels.ssim(a, np.zeros((1, 8, 9), np.float32))
    with pytest.raises(TypeError, match="a"):
        kernels.ssim(a.astype(np.int64), a)
    bad = a.copy()
    bad[0, 2, 2] = np.nan
    assert np.isnan(kernels.ssim(bad, a)[0])
    assert kernels.ssim(a[:0], a[:0]).shape == (0,)


def test_spearman_equals_scipy_with_ties():
    rng = np.random.default_rng(1)
    a = np.round(rng.random((4, 6, 7)), 1)
    b = np.round(a + 0.2 * rng.standard_normal((4, 6, 7)), 1)
    b[3] = -a[3]
    want = [scipy.stats.spearmanr(a[i].ravel(), b[i].ravel()).statistic for i in range(4)]
    np.testing.assert_allclose(metrics.spearman(a, b), want, atol=1e-12)
    assert np.isnan(metrics.spearman(np.ones((1, 4)), a[:1, 0, :4]))[0]


# --- blocks and randomisation -----------------------------------------------------------------------


def test_blocks_and_their_reinitialisation():
    model = tiny_cnn()
    assert metrics.model_blocks(model) == ["0", "1", "3", "7"]
    copy_ = copy.deepcopy(model)
    rng_state = torch.random.get_rng_state()
    metrics.randomise_blocks(copy_, ["3", "7"], seed=1)
    assert torch.equal(torch.random.get_rng_state(), rng_state)  # the caller's random state
    before, after = model.state_dict(), copy_.state_dict()
    for k in before:
        changed = not torch.equal(before[k], after[k])
        assert changed == (k.split(".")[0] in ("3", "7")), k
    again = copy.deepcopy(model)
    metrics.randomise_blocks(again, ["3", "7"], seed=1)
    assert all(torch.equal(after[k], v) for k, v in again.state_dict().items())  # seeded


def test_parameters_outside_modules_with_reset_are_drawn_from_their_own_statistics():
    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.pos = nn.Parameter(torch.full((1, 50), 3.0) + torch.linspace(0, 1, 50))
            self.head = nn.Linear(50, 2)

        def forward(self, x):
            return self.head(x.flatten(1)[:, :50] + self.pos)

    m = Tokens()
    assert metrics.model_blocks(m) == ["", "head"]
    c = copy.deepcopy(m)
    metrics.randomise_blocks(c, [""], seed=0)
    assert not torch.equal(c.pos, m.pos) and torch.equal(c.head.weight, m.head.weight)
    assert abs(float(c.pos.detach().mean()) - float(m.pos.detach().mean())) < 0.2


# --- the test ---------------------------------------------------------------------------------------


def test_the_model_leaves_as_it_came_and_the_edge_detector_fails():
    model = tiny_cnn().train()
    model[0].weight.grad = torch.ones_like(model[0].weight)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    flags = [p.requires_grad for p in model.parameters()]
    r = metrics.randomisation_test(model, images, {"edges": metrics.edge_explainer,
                                                   "gradcam": metrics.cam_explainer("3")})
    assert model.training and torch.is_grad_enabled()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert torch.equal(model[0].weight.grad, torch.ones_like(model[0].weight))
    assert all(p.grad is None for n, p in model.named_parameters() if n != "0.weight")
    assert not model._forward_hooks and not any(m._forward_hooks or m._backward_hooks for m in model.modules())
    edges = r.cascading["edges"]
    for measure in metrics.sanity.MEASURES:
        np.testing.assert_allclose(edges[measure], 1.0, atol=1e-9)   # every depth: the same map
        np.testing.assert_allclose(r.independent["edges"][measure], 1.0, atol=1e-9)
        np.testing.assert_allclose(r.cascading["gradcam"][measure][0], 1.0, atol=1e-9)
    assert r.passes()["edges"] is False
    assert r.cascading["gradcam"]["ssim"].shape == (5, 3) and r.independent["gradcam"]["ssim"].shape == (4, 3)
    rows = r.table()
    assert len(rows) == 2 * (5 + 4)
    top = [x for x in rows if x["method"] == "gradcam" and x["mode"] == "cascading"][-1]
    v = r.cascading["gradcam"]["ssim"][-1]
    assert top["ssim"] == pytest.approx(v.mean()) and top["ssim_se"] == pytest.approx(v.std(ddof=1) / np.sqrt(3))


def test_the_maps_of_every_depth_are_those_of_a_randomised_copy():
    model = tiny_cnn(seed=3)
    images = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    explain = metrics.cam_explainer("3", method="gradcam")
    r = metrics.randomisation_test(model, images, explain, targets=[1, 2], modes=("cascading",), seed=4)
    names = r.blocks
    ref = explain(model, images, np.array([1, 2]))
    for k in range(1, len(names) + 1):
        c = copy.deepcopy(model)
        metrics.randomise_blocks(c, names[len(names) - k:], seed=4)
        maps = explain(c, images, np.array([1, 2]))
        # undefined (NaN) for a constant trained map; 0 for a randomised map that went constant
        want = [np.nan if np.ptp(ref[i]) == 0 else 0.0 if np.ptp(maps[i]) == 0
                else scipy.stats.spearmanr(ref[i].ravel(), maps[i].ravel()).statistic for i in range(2)]
        np.testing.assert_allclose(r.cascading["method"]["spearman"][k], want, atol=1e-12)
        u = kernels.minmax(ref.astype(np.float32), eps=0.0), kernels.minmax(maps.astype(np.float32), eps=0.0)
        want = [structural_similarity(u[0][i].astype(np.float64), u[1][i].astype(np.float64), data_range=1.0)
                for i in range(2)]
        np.testing.assert_allclose(r.cascading["method"]["ssim"][k], want, atol=1e-6)


@pytest.mark.slow
def test_gradcam_and_finer_pass_on_the_embedded_cnn():
    from finercam.world.datasets import generate
    from finercam.world.models import default_target_layer, load

    model = load("cnn")
    images = torch.from_numpy(generate(8, seed=0, split="test").images)
    layer = default_target_layer("cnn")
    r = metrics.randomisation_test(model, images, {
        "gradcam": metrics.cam_explainer(layer), "finer": metrics.cam_explainer(layer, gamma=0.6),
        "edges": metrics.edge_explainer}, modes=("cascading",))
    assert r.passes() == {"gradcam": True, "finer": True, "edges": False}


def test_bad_input_is_a_clear_error():
    model = tiny_cnn()
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(TypeError, match="explainer 'a'"):
        metrics.randomisation_test(model, x, {"a": 3})
    with pytest.raises(ValueError, match="blocks"):
        metrics.randomisation_test(model, x, metrics.edge_explainer, blocks=["nope"])
    with pytest.raises(ValueError, match="modes"):
        metrics.randomisation_test(model, x, metrics.edge_explainer, modes=("sideways",))
    with pytest.raises(ValueError, match="explainer 'method'"):
        metrics.randomisation_test(model, x, lambda m, i, t: np.zeros((2, 8, 8)))
    with pytest.raises(TypeError, match="model"):
        metrics.randomisation_test(lambda x: x, x, metrics.edge_explainer)
    with pytest.raises(ValueError, match="targets"):
        metrics.randomisation_test(model, x, metrics.edge_explainer, targets=[9])


def test_the_sanity_command_writes_the_table_and_the_figure(tmp_path, capsys):
    from finercam.apps.cli import main

    out = tmp_path / "s"
    assert main(["sanity", "--model", "cnn", "--n", "3", "--modes", "cascading", "--out", str(out),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| Grad-CAM + Finer | trained | 1.000 ± 0.000" in printed and "Edges (control): NO" in printed
    data = json.loads((out / "sanity.json").read_text())
    assert data["passes"]["Edges (control)"] is False and data["blocks"][-1] == "fc"
    from PIL import Image
    with Image.open(out / "sanity.png") as im:
        assert im.size[0] > 1000
    assert main(["sanity", "--model", "cnn", "--n", "1", "--out", str(out)]) == 2
    assert "--n must be at least 2" in capsys.readouterr().err
    assert main(["sanity", "--model", "cnn", str(tmp_path / "missing.jpg"), "--out", str(out)]) == 2
