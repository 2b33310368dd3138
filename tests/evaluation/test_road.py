"""ROAD (finercam.metrics.road_scores, csrc/impute.c) against its oracles: the SciPy twin of the linear
system (finercam._twins.road_impute), pytorch-grad-cam 1.5.7's own NoisyLinearImputer and ROAD
metrics (installed by ``make test``, imported as tests/test_finer_pgc.py does), and torch's stable
sort for the removal order."""
import importlib.metadata
import math
import sys

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from locations import TESTS

from finercam import _twins, kernels, metrics

sys.path.insert(0, str(TESTS / "engine"))  # pytorch-grad-cam's import, as tests/engine/test_finer_pgc.py makes it
from test_finer_pgc import PGC_VERSION, _stand_in_torchvision  # noqa: E402


@pytest.fixture(scope="module")
def pgc_road():
    """pytorch-grad-cam's ROAD module and its targets, over the stand-in torchvision."""
    assert importlib.metadata.version("grad-cam") == PGC_VERSION
    with pytest.MonkeyPatch.context() as mp:
        for name, module in _stand_in_torchvision().items():
            mp.setitem(sys.modules, name, module)
        from pytorch_grad_cam.metrics import road
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
        yield road, ClassifierOutputSoftmaxTarget
        for name in [n for n in sys.modules if n == "pytorch_grad_cam" or n.startswith("pytorch_grad_cam.")]:
            del sys.modules[name]


def smooth_images(n, c, h, w, seed=0):
    rng = np.random.default_rng(seed)
    return (ndi.gaussian_filter(rng.standard_normal((n, c, h, w)), (0, 0, 2, 2)) * 4).astype(np.float32)


def smooth_maps(n, h, w, seed=1, sigma=4):
    rng = np.random.default_rng(seed)
    return ndi.gaussian_filter(rng.standard_normal((n, h, w)), (0, sigma, sigma)).astype(np.float32)


def tiny_cnn(seed=0, classes=5):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(6, 8, 3, padding=1),
        torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(32, classes)).eval()


# --- the kernel against its twin ----------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 3, 40, 36), (1, 1, 17, 5), (1, 2, 1, 9)])
def test_imputation_equals_the_exact_solve(shape):
    images = smooth_images(*shape)
    n, _, h, w = shape
    rng = np.random.default_rng(3)
    removed = np.stack([smooth_maps(n, h, w, seed=4) > 0.0, rng.random((n, h, w)) < 0.5,
                        np.zeros((n, h, w), bool)], axis=1)
    removed[:, 2, : h // 2] = True  # a band along the top edge
    got = kernels.road_impute(images, removed, noise=0.0)
    want = _twins.road_impute(images, removed)
    np.testing.assert_allclose(got, want, atol=2e-5)
    # the kept pixels are the image's, bit for bit
    rows = np.repeat(images, 3, axis=0)
    keep = ~removed.reshape(n * 3, 1, h, w).repeat(shape[1], axis=1)
    np.testing.assert_array_equal(got[keep], rows[keep])
    tight = kernels.road_impute(images, removed, noise=0.0, tol=1e-12, max_iter=500)
    np.testing.assert_allclose(tight, want, atol=1e-6)


def test_regions_without_a_kept_neighbour_are_zero():
    images = smooth_images(1, 3, 20, 20)
    everything = np.ones((1, 1, 20, 20), bool)
    np.testing.assert_array_equal(kernels.road_impute(images, everything, noise=0.0), 0.0)
    np.testing.assert_allclose(kernels.road_impute(images, everything, noise=0.0),
                               _twins.road_impute(images, everything))


def test_noise_is_seeded_and_independent_of_threads_and_chunks():
    images = smooth_images(3, 3, 32, 32)
    removed = np.random.default_rng(0).random((3, 2, 32, 32)) < 0.4
    old = kernels.get_num_threads()
    try:
        kernels.set_num_threads(1)
        one = kernels.road_impute(images, removed, noise=0.5, seed=11)
        kernels.set_num_threads(4)
        four = kernels.road_impute(images, removed, noise=0.5, seed=11)
    finally:
        kernels.set_num_threads(old)
    np.testing.assert_array_equal(one, four)
    # the third image alone, told its first row, draws what the whole call drew for it
    np.testing.assert_array_equal(kernels.road_impute(images[2:], removed[2:], noise=0.5, seed=11, first=4),
                                  one[4:])
    clean = kernels.road_impute(images, removed, noise=0.0)
    diff = (one - clean)[removed.reshape(6, 1, 32, 32).repeat(3, axis=1)]
    assert abs(diff.mean()) < 0.02 and abs(diff.std() - 0.5) < 0.02
    assert not np.array_equal(kernels.road_impute(images, removed, noise=0.5, seed=12), one)


# --- pytorch-grad-cam -----------------------------------------------------------------------------


# pytorch-grad-cam's np.float32(tensor < threshold) warns under NumPy 2: its code, not ours
PGC_WARNINGS = pytest.mark.filterwarnings("ignore:__array_wrap__ must accept context:DeprecationWarning")


@PGC_WARNINGS
@pytest.mark.parametrize("size,percentile", [((48, 56), 20), ((48, 56), 70), ((224, 224), 50)])
def test_imputation_equals_pytorch_grad_cams(pgc_road, size, percentile):
    road, _ = pgc_road
    h, w = size
    image = smooth_images(1, 3, h, w, seed=5)[0]
    cam = smooth_maps(1, h, w, seed=6, sigma=h / 10)[0]
    keep = np.float32(cam < np.percentile(cam, percentile))
    theirs = road.NoisyLinearImputer(noise=0.0)(torch.from_numpy(image), torch.from_numpy(keep)).numpy()
    ours = kernels.road_impute(image[None], (keep == 0)[None, None], noise=0.0)[0]
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)


@PGC_WARNINGS
def test_road_scores_equal_pytorch_grad_cams(pgc_road, monkeypatch):
    road, SoftmaxTarget = pgc_road
    # their ROAD classes build NoisyLinearImputer() with noise 0.01 drawn by torch: set it to 0
    monkeypatch.setattr(road.NoisyLinearImputer.__init__, "__defaults__",
                        (0.0, road.neighbors_weights))
    model = tiny_cnn()
    images = torch.from_numpy(smooth_images(3, 3, 24, 28, seed=7))
    cams = smooth_maps(3, 24, 28, seed=8, sigma=3)
    cams = (cams - cams.min()) / (cams.max() - cams.min())
    targets = [0, 3, 4]
    percentiles = [20, 50, 80]
    fractions = [1 - p / 100 for p in percentiles]
    tgt = [SoftmaxTarget(c) for c in targets]
    ours = metrics.road(model, images, cams, targets, fractions, noise=0.0, compat="pgc")
    np.testing.assert_allclose(
        ours.morf, road.ROADMostRelevantFirstAverage(percentiles)(images, cams, tgt, model), atol=1e-5)
    np.testing.assert_allclose(
        ours.lerf, road.ROADLeastRelevantFirstAverage(percentiles)(images, cams, tgt, model), atol=1e-5)
    np.testing.assert_allclose(ours.combined, road.ROADCombined(percentiles)(images, cams, tgt, model),
                               atol=1e-5)
    one = road.ROADMostRelevantFirst(80)(images, cams, tgt, model)  # removes the top 20 %
    np.testing.assert_allclose(metrics.road_morf(model, images, cams, targets, 0.2, noise=0.0, compat="pgc"),
                               one, atol=1e-5)


# --- our removal rule -----------------------------------------------------------------------------


def oracle_removed(maps, k, order):
    n, h, w = maps.shape
    order_idx = torch.argsort(torch.from_numpy(maps).reshape(n, -1), dim=1, descending=True, stable=True)
    chosen = order_idx[:, :k] if order == "morf" else order_idx[:, h * w - k:]
    out = torch.zeros(n, h * w, dtype=torch.bool)
    out.scatter_(1, chosen, True)
    return out.reshape(n, h, w).numpy()


def test_road_curves_against_the_twin_and_a_stable_sort():
    model = tiny_cnn(seed=2)
    images = torch.from_numpy(smooth_images(4, 3, 12, 10, seed=9))
    maps = np.round(smooth_maps(4, 12, 10, seed=10, sigma=1.5), 1)  # rounded: many ties
    fractions = (0.1, 0.45, 0.9)
    r = metrics.road(model, images, maps, None, fractions, noise=0.0, batch_size=5)
    with torch.no_grad():
        p = torch.softmax(model(images).double(), 1).numpy()
    t = p.argmax(1)
    np.testing.assert_allclose(r.p0, p[np.arange(4), t], atol=1e-12)
    for order, curve in (("morf", r.morf_curve), ("lerf", r.lerf_curve)):
        for j, f in enumerate(fractions):
            k = math.ceil(f * 120)
            assert r.counts[j] == k
            rm = oracle_removed(maps, k, order)
            np.testing.assert_array_equal(metrics.road_masks(maps, [f], order)[:, 0], rm)
            x = torch.from_numpy(_twins.road_impute(images.numpy(), rm[:, None]))
            with torch.no_grad():
                q = torch.softmax(model(x).double(), 1).numpy()
            np.testing.assert_allclose(curve[:, j], q[np.arange(4), t], atol=1e-5)
    np.testing.assert_allclose(r.morf, (r.morf_curve - r.p0[:, None]).mean(1))
    np.testing.assert_allclose(r.combined, (r.lerf - r.morf) / 2)


def test_road_with_noise_is_reproducible_and_chunk_independent(monkeypatch):
    model = tiny_cnn()
    images = torch.from_numpy(smooth_images(3, 3, 16, 16))
    maps = smooth_maps(3, 16, 16)
    a = metrics.road(model, images, maps, fractions=(0.3, 0.6), seed=5)
    monkeypatch.setattr(metrics, "BUFFER_BYTES", 1)
    b = metrics.road(model, images, maps, fractions=(0.3, 0.6), seed=5, batch_size=1)
    np.testing.assert_allclose(a.morf_curve, b.morf_curve, atol=1e-12)
    np.testing.assert_allclose(a.lerf_curve, b.lerf_curve, atol=1e-12)
    c = metrics.road(model, images, maps, fractions=(0.3, 0.6), seed=6)
    assert not np.allclose(a.morf_curve, c.morf_curve, atol=1e-9, rtol=0)
    only = metrics.road(model, images, maps, fractions=(0.3, 0.6), seed=5, orders=("lerf",))
    assert np.isnan(only.morf).all()
    np.testing.assert_allclose(only.lerf, a.lerf)


def test_the_model_leaves_as_it_came():
    model = tiny_cnn().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    metrics.road(model, torch.from_numpy(smooth_images(2, 3, 8, 8)), smooth_maps(2, 8, 8),
                 fractions=(0.5,))
    assert model.training and torch.is_grad_enabled()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


# --- bad input ------------------------------------------------------------------------------------


def test_bad_arrays_are_clear_errors_never_crashes():
    img = smooth_images(1, 3, 8, 8)
    rm = np.zeros((1, 2, 8, 8), bool)
    with pytest.raises(TypeError, match="images"):
        kernels.road_impute(img.astype(np.int32), rm)
    with pytest.raises(ValueError, match="images"):
        kernels.road_impute(img[0], rm)
    with pytest.raises(ValueError, match="removed"):
        kernels.road_impute(img, np.zeros((1, 2, 8, 7), bool))
    with pytest.raises(ValueError, match="removed"):
        kernels.road_impute(img, np.zeros((2, 2, 8, 8), bool))
    with pytest.raises(TypeError, match="removed"):
        kernels.road_impute(img, np.zeros((1, 2, 8, 8), "U1"))
    with pytest.raises(ValueError, match="64 channels"):
        kernels.road_impute(np.zeros((1, 65, 4, 4), np.float32), np.zeros((1, 1, 4, 4), bool))
    with pytest.raises(ValueError, match="noise"):
        kernels.road_impute(img, rm, noise=-1.0)
    with pytest.raises(ValueError, match="tol"):
        kernels.road_impute(img, rm, tol=0.0)
    with pytest.raises(ValueError, match="max_iter"):
        kernels.road_impute(img, rm, max_iter=0)
    with pytest.raises(TypeError, match="seed"):
        kernels.road_impute(img, rm, seed=1.5)
    with pytest.raises(ValueError, match="seed"):
        kernels.road_impute(img, rm, seed=-1)
    # empty batches, non-contiguous and float64 input, NaN and inf: results, no crash
    assert kernels.road_impute(img[:0], rm[:0]).shape == (0, 3, 8, 8)
    assert kernels.road_impute(img, rm[:, :0]).shape == (0, 3, 8, 8)
    strided = np.asfortranarray(img.astype(np.float64))
    np.testing.assert_array_equal(kernels.road_impute(strided, rm[:, :1], noise=0.0)[0], img[0])
    broken = img.copy()
    broken[0, 0, 3, 3], broken[0, 1, 0, 0] = np.nan, np.inf
    rm_some = np.random.default_rng(0).random((1, 1, 8, 8)) < 0.5
    out = kernels.road_impute(broken, rm_some, noise=0.0)
    assert out.shape == (1, 3, 8, 8) and np.isfinite(out[0, 2]).all()
    model = tiny_cnn()
    x = torch.from_numpy(img)
    with pytest.raises(ValueError, match="fractions"):
        metrics.road(model, x, smooth_maps(1, 8, 8), fractions=(0.0,))
    with pytest.raises(ValueError, match="orders"):
        metrics.road(model, x, smooth_maps(1, 8, 8), orders=("up",))
    with pytest.raises(ValueError, match="compat"):
        metrics.road(model, x, smooth_maps(1, 8, 8), compat="quantus")
    with pytest.raises(TypeError, match="noise"):
        metrics.road(model, x, smooth_maps(1, 8, 8), noise="loud")
    with pytest.raises(ValueError, match="maps"):
        metrics.road(model, x, smooth_maps(1, 8, 9))
