"""Explanation.diagnose against values recomputed by hand with plain torch autograd (models_for_tests)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import finercam
from finercam.diagnose import Diagnosis, diagnose, map_correlation
from models_for_tests import TinyResNet, activation_and_grad, images, oracle_gradient_method, seeded

TARGETS = [3, 0, 7]
REFS = [[1, 2, 5], [4, 9, 3], [0, 8, 2]]
GAMMA = 0.6


@pytest.fixture(scope="module")
def setup():
    net = seeded(TinyResNet)
    x = images()
    exp = finercam.FinerCAM(net, "layer2", gamma=GAMMA, candidates=10)(x, TARGETS, REFS)
    return net, x, exp, exp.diagnose(net.fc)


def _gradcam_mass(net, x, objective) -> np.ndarray:
    """sum over the grid of ReLU(sum_k mean_ij(dO/dA_k) A_k), by a full backward of the objective."""
    A, g, _ = activation_and_grad(net, x, "layer2", objective)
    return (g.mean((2, 3), keepdim=True) * A).sum(1).clamp(min=0).sum((1, 2)).double().numpy()


def test_reference_mass_by_hand(setup):
    net, x, exp, d = setup
    rows = torch.arange(3)
    t, r = torch.tensor(TARGETS), torch.tensor(REFS)
    target = _gradcam_mass(net, x, lambda y: y[rows, t])
    refs = _gradcam_mass(net, x, lambda y: y[rows[:, None], r].mean(1))
    np.testing.assert_allclose(d.reference_mass, refs / target, rtol=1e-4)
    for j in range(3):
        one = _gradcam_mass(net, x, lambda y, j=j: y[rows, r[:, j]])
        np.testing.assert_allclose(d.per_reference_mass[:, j], one / target, rtol=1e-4)


def test_correlation_cosine_and_gap_by_hand(setup):
    net, x, exp, d = setup
    _, finer = oracle_gradient_method(net, x, "layer2", "gradcam", TARGETS, REFS, GAMMA, "mean")
    _, base = oracle_gradient_method(net, x, "layer2", "gradcam", TARGETS, REFS, 0.0, "mean")
    corr = [np.corrcoef(finer[i].numpy().ravel(), base[i].numpy().ravel())[0, 1] for i in range(3)]
    np.testing.assert_allclose(d.map_correlation, corr, atol=2e-3)
    w = net.fc.weight.detach().double()
    cos = [[float(F.cosine_similarity(w[c], w[k], dim=0)) for k in refs] for c, refs in zip(TARGETS, REFS)]
    np.testing.assert_allclose(d.weight_cosine, cos, rtol=1e-9, atol=1e-12)
    with torch.no_grad():
        y = net(x).double().numpy()
    gap = [[y[i, c] - y[i, k] for k in REFS[i]] for i, c in enumerate(TARGETS)]
    np.testing.assert_allclose(d.logit_gap, gap, atol=1e-4)
    # The weight matrix itself gives the same cosines; no classifier leaves them NaN.
    np.testing.assert_allclose(diagnose(exp, net.fc.weight.detach().numpy()).weight_cosine, cos, atol=1e-6)
    assert np.isnan(exp.diagnose().weight_cosine).all()


def test_gamma_zero_changes_nothing(setup):
    _, _, exp, _ = setup
    d = exp.recombine(gamma=0.0).diagnose()
    np.testing.assert_allclose(d.map_correlation, 1.0, atol=1e-9)
    assert isinstance(d, Diagnosis) and d.gamma == 0.0
    assert "little change" in d.summary(0, class_names=[f"c{k}" for k in range(10)])


def test_map_correlation_values_and_errors():
    a = np.array([[[1.0, 2.0], [3.0, 4.0]], [[1.0, 1.0], [1.0, 1.0]]])
    b = np.array([[[2.0, 1.0], [4.0, 3.0]], [[0.0, 1.0], [2.0, 3.0]]])
    r = map_correlation(a, b)
    assert r[0] == pytest.approx(np.corrcoef(a[0].ravel(), b[0].ravel())[0, 1]) and np.isnan(r[1])
    with pytest.raises(ValueError, match="a and b"):
        map_correlation(a, b[:, :1])


def test_bad_classifier_and_objective(setup):
    net, x, exp, _ = setup
    with pytest.raises(ValueError, match="classifier"):
        exp.diagnose(np.ones((3, 4)))
    pgc = finercam.FinerCAM(net, "layer2", objective="pgc")(x, TARGETS)
    with pytest.raises(ValueError, match="objective='paper'"):
        pgc.diagnose()


def test_bad_arguments_name_themselves(setup):
    _, _, exp, _ = setup
    with pytest.raises(TypeError, match="explanation must be a finercam.Explanation"):
        diagnose(exp.maps)
    with pytest.raises(TypeError, match="classifier"):
        exp.diagnose("fc")
    w = np.ones((10, 8))
    w[2, 3] = np.nan
    with pytest.raises(ValueError, match="classifier weights must be finite"):
        exp.diagnose(w)
    d = exp.diagnose()
    for i in (-1, len(exp.targets), 1.0, True):
        with pytest.raises(ValueError, match="i must be an image index"):
            d.summary(i)
