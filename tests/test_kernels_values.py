"""Fixed cases of every kernel against its NumPy twin and, for resizing, against torch."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from finercam import _twins as ref
from finercam import kernels


def _rng():
    return np.random.default_rng(1234)


@pytest.mark.parametrize("relu", [False, True])
def test_combine_matches_twin(relu):
    rng = _rng()
    a = rng.standard_normal((3, 5, 7, 6)).astype(np.float32)
    w = rng.standard_normal((3, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(kernels.combine(a, w, relu=relu), ref.combine(a, w, relu),
                               rtol=1e-6, atol=1e-6)


def test_combine_pixelwise_matches_twin():
    rng = _rng()
    a = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    p = rng.standard_normal((2, 4, 3, 4, 5)).astype(np.float32)
    for relu in (False, True):
        np.testing.assert_allclose(kernels.combine_pixelwise(a, p, relu=relu),
                                   ref.combine_pixelwise(a, p, relu), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("size", [(224, 224), (3, 5), (1, 1), (7, 9), (13, 2), (2, 31)])
@pytest.mark.parametrize("align_corners", [False, True])
def test_resize_matches_twin_and_torch(size, align_corners):
    maps = _rng().standard_normal((4, 7, 9)).astype(np.float32)
    got = kernels.resize(maps, size, align_corners=align_corners)
    np.testing.assert_allclose(got, ref.resize(maps, size, align_corners), rtol=1e-6, atol=1e-6)
    want = F.interpolate(torch.from_numpy(maps)[:, None], size=size, mode="bilinear",
                         align_corners=align_corners)[:, 0].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_minmax_policy():
    maps = np.array([[[1, 3], [2, 5]], [[7, 7], [7, 7]], [[0, np.nan], [1, 2]]], np.float32)
    got = kernels.minmax(maps, eps=0.0)
    np.testing.assert_array_equal(got[0], [[0, 0.5], [0.25, 1]])
    np.testing.assert_array_equal(got[1], np.zeros((2, 2)))
    assert np.isnan(got[2]).all()


def test_postprocess_and_fuse_match_twins():
    rng = _rng()
    maps = rng.standard_normal((4, 7, 7)).astype(np.float32)
    np.testing.assert_allclose(kernels.postprocess(maps, 56), ref.postprocess(maps, (56, 56)),
                               rtol=1e-6, atol=1e-6)
    layers = [maps, rng.standard_normal((4, 3, 5)).astype(np.float32)]
    np.testing.assert_allclose(kernels.fuse_layers(layers, (20, 30)),
                               ref.fuse_layers(layers, (20, 30)), rtol=1e-6, atol=1e-6)


def test_readme_example_runs():
    """The README's "Using the C core" block runs and means what it says."""
    import pathlib
    import re

    readme = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Using the C core", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    env: dict = {}
    exec(compile(code, "README.md", "exec"), env)
    maps, cams, acts, weights = env["maps"], env["cams"], env["acts"], env["weights"]
    np.testing.assert_allclose(cams, ref.combine(acts, weights), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(maps.reshape(32, 224, 224),
                               ref.postprocess(cams.reshape(32, 7, 7), (224, 224)), atol=1e-6)
    assert env["fused"].shape == (8, 224, 224)
