"""The metrics kernels of the C core (rank.c, measure.c) against their NumPy twins."""
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finercam import _twins as ref
from finercam import kernels

FEW = settings(max_examples=40, deadline=None)


@st.composite
def tied_maps(draw, max_n=3, max_side=9):
    """(N, H, W) float32 maps drawn from a handful of values: many ties, both zero signs."""
    n = draw(st.integers(1, max_n))
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    values = draw(st.lists(st.sampled_from([0.0, -0.0, 0.5, 1.0, -2.0, 3e-38, np.inf, -np.inf]),
                           min_size=n * h * w, max_size=n * h * w))
    return np.array(values, dtype=np.float32).reshape(n, h, w)


@FEW
@given(tied_maps())
def test_argsort_and_rank_equal_the_twin(maps):
    np.testing.assert_array_equal(kernels.argsort_desc(maps), ref.argsort_desc(maps))
    np.testing.assert_array_equal(kernels.rank_desc(maps).reshape(len(maps), -1),
                                  ref.rank_desc(maps))


def test_argsort_hand_values_ties_zero_signs_and_nan():
    m = np.array([[[0.5, -0.0, 1.0], [0.0, 0.5, np.nan]]], np.float32)
    assert kernels.argsort_desc(m).tolist() == [[2, 0, 4, 1, 3, 5]]
    assert kernels.rank_desc(m).tolist() == [[[1, 3, 0], [4, 2, 5]]]


def test_argsort_large_continuous_map_equals_numpy_stable_sort():
    m = np.random.default_rng(0).random((2, 61, 67)).astype(np.float32)
    m[0, :5] = 0.25  # a block of ties inside continuous values
    np.testing.assert_array_equal(kernels.argsort_desc(m), ref.argsort_desc(m))


@FEW
@given(tied_maps(max_n=2, max_side=6), st.integers(1, 3), st.data())
def test_mask_top_equals_the_twin(maps, c, data):
    maps = np.nan_to_num(maps, posinf=5.0, neginf=-5.0)
    n, h, w = maps.shape
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    images = rng.standard_normal((n, c, h, w)).astype(np.float32)
    base = rng.standard_normal((n, c, h, w)).astype(np.float32)
    counts = data.draw(st.lists(st.integers(0, h * w), min_size=1, max_size=4))
    got = kernels.mask_top(images, maps, base, counts)
    np.testing.assert_array_equal(got, ref.mask_top(images, maps, base, counts))


def test_mask_top_hand_values_and_preallocated_buffer():
    images = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2)
    maps = np.array([[[0.1, 0.9], [0.9, 0.2]]], np.float32)
    base = -np.ones_like(images)
    out = np.full((3, 2, 2, 2), 7.0, np.float32)
    got = kernels.mask_top(images, maps, base, [0, 1, 3], out=out)
    assert got is out
    # ranks: pixel 1 (0.9), pixel 2 (0.9, later index), pixel 3 (0.2), pixel 0
    assert out[:, 0].reshape(3, 4).tolist() == [[0, 1, 2, 3], [0, -1, 2, 3], [0, -1, -1, -1]]
    assert out[2, 1].reshape(4).tolist() == [4, -1, -1, -1]


def test_mask_top_does_not_modify_inputs_and_accepts_strided_swapped_float64():
    rng = np.random.default_rng(1)
    images = rng.standard_normal((2, 3, 5, 4)).astype(np.float64)
    maps = rng.random((2, 4, 5)).astype(">f4").transpose(0, 2, 1)  # byte-swapped, transposed
    base = np.zeros((2, 3, 5, 8), np.float32)[..., ::2]              # strided
    before = (images.copy(), maps.copy(), base.copy())
    got = kernels.mask_top(images, maps, base, [3, 20])
    want = ref.mask_top(images.astype(np.float32), np.ascontiguousarray(maps, np.float32),
                        base, [3, 20])
    np.testing.assert_array_equal(got, want)
    for a, b in zip((images, maps, base), before):
        np.testing.assert_array_equal(a, b)


def test_mask_top_rejects_bad_arguments_naming_them():
    img = np.zeros((2, 1, 3, 3), np.float32)
    maps = np.zeros((2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="counts"):
        kernels.mask_top(img, maps, img, [10])
    with pytest.raises(ValueError, match="counts"):
        kernels.mask_top(img, maps, img, [-1])
    with pytest.raises(ValueError, match="maps"):
        kernels.mask_top(img, maps[:, :2], img, [1])
    with pytest.raises(ValueError, match="baseline"):
        kernels.mask_top(img, maps, img[:1], [1])
    with pytest.raises(TypeError, match="images"):
        kernels.mask_top(img.astype(np.int32), maps, img, [1])
    with pytest.raises(TypeError, match="counts"):
        kernels.mask_top(img, maps, img, [0.5])
    with pytest.raises(ValueError, match="out"):
        kernels.mask_top(img, maps, img, [1], out=np.zeros((3, 1, 3, 3), np.float32))
    with pytest.raises(TypeError, match="out"):
        kernels.mask_top(img, maps, img, [1], out=np.zeros((2, 1, 3, 3), np.float64))
    with pytest.raises(ValueError, match="share memory"):
        kernels.mask_top(img, maps, img, [1], out=img)


def test_empty_batches_and_counts_give_empty_results():
    assert kernels.argsort_desc(np.zeros((0, 3, 3), np.float32)).shape == (0, 9)
    img = np.zeros((2, 1, 3, 3), np.float32)
    assert kernels.mask_top(img, np.zeros((2, 3, 3), np.float32), img, []).shape == (0, 1, 3, 3)


@FEW
@given(tied_maps(), st.data())
def test_energy_and_pointing_equal_the_twins(maps, data):
    masks = np.array(data.draw(st.lists(st.booleans(), min_size=maps.size, max_size=maps.size)),
                     dtype=bool).reshape(maps.shape)
    maps = np.abs(maps)
    np.testing.assert_allclose(kernels.energy_in_mask(maps, masks),
                               ref.energy_in_mask(maps, masks), rtol=1e-12, equal_nan=True)
    np.testing.assert_array_equal(kernels.pointing_hit(maps, masks),
                                  ref.pointing_hit(maps, masks))


def test_energy_and_pointing_hand_values():
    maps = np.array([[[1, 2], [3, 4]], [[0, 0], [0, 0]], [[1, np.nan], [1, 1]]], np.float32)
    masks = np.array([[[1, 0], [0, 1]], [[1, 1], [1, 1]], [[1, 1], [1, 1]]], bool)
    e = kernels.energy_in_mask(maps, masks)
    assert e[0] == 0.5 and np.isnan(e[1]) and np.isnan(e[2])
    assert kernels.pointing_hit(maps, masks).tolist() == [True, True, True]
    assert kernels.pointing_hit(maps, ~masks).tolist() == [False, False, False]
    with pytest.raises(ValueError, match="masks"):
        kernels.energy_in_mask(maps, masks[:, :1])
    np.testing.assert_array_equal(kernels.energy_in_mask(maps, masks.astype(np.uint8) * 3), e)
    with pytest.raises(TypeError, match="masks"):
        kernels.pointing_hit(maps, masks.astype(str))


def test_trapezoid_and_cosine_equal_the_twins():
    rng = np.random.default_rng(2)
    y = rng.random((4, 21))
    x = np.arange(21) / 20
    np.testing.assert_allclose(kernels.trapezoid(y, x), ref.trapezoid(y, x), rtol=1e-13)
    assert kernels.trapezoid(y[:, :1], x[:1]).tolist() == [0.0] * 4
    a = rng.standard_normal((5, 7)).astype(np.float32)
    a[3] = 0
    b = rng.standard_normal((3, 7)).astype(np.float32)
    np.testing.assert_allclose(kernels.cosine_matrix(a, b), ref.cosine_matrix(a, b), atol=1e-7)
    np.testing.assert_allclose(kernels.cosine_matrix(a), ref.cosine_matrix(a, a), atol=1e-7)
    assert kernels.cosine_matrix(a)[3].tolist() == [0.0] * 5
    with pytest.raises(ValueError, match="columns"):
        kernels.cosine_matrix(a, b[:, :3])
    with pytest.raises(ValueError, match="x has"):
        kernels.trapezoid(y, x[:5])


def test_no_reference_leaks_on_success_or_error():
    maps = np.random.default_rng(3).random((2, 4, 4)).astype(np.float32)
    img = np.zeros((2, 1, 4, 4), np.float32)
    counts = np.array([1, 2])
    before = [sys.getrefcount(a) for a in (maps, img, counts)]
    for _ in range(50):
        kernels.argsort_desc(maps)
        kernels.mask_top(img, maps, img, counts)
        with pytest.raises(ValueError):
            kernels.mask_top(img, maps, img, counts, out=np.zeros((1, 1, 4, 4), np.float32))
    assert [sys.getrefcount(a) for a in (maps, img, counts)] == before
