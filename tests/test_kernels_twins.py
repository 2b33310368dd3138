"""Property tests: every C kernel against its NumPy twin (``finercam._twins``).

Inputs vary in shape (N = 0, 1x1, odd, non-square, up- and down-sampling), layout (non-contiguous,
negatively strided, Fortran order), dtype (float32, byte-swapped float32, float64, float16: the
latter converted to float32 first, so the oracle sees ``x.astype(float32)``) and values
(moderate, the whole float32 range, denormals, constant maps, NaN/inf).

Tolerances follow from how each side computes, not from trial and error. Both sides compute in
double and round once to float32, so they may differ by one float32 ulp of the result plus the
double rounding of the intermediate sums, bounded by a small multiple of 2**-52 times the
magnitude that entered them:
  combine:      ulp + 1e-12 * sum_k |w_k| |a_k|
  resize:       ulp + 1e-14 * max |x|                      (per map)
  minmax:       ulp(1)                                      (identical range, x * (1/d) vs x / d)
  postprocess:  ulp(1) + 1e-14 * max |x| / (max - min + eps) of the resized map
Non-finite values must sit at the same places (and, for sums, be the same value); the min-max
policy (NaN map, all-equal map) must match exactly.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from finercam import _twins as ref
from finercam import kernels

# The oracles see inf, NaN and float16 overflow on purpose; NumPy's warnings about them are noise.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

ULP1 = float(np.spacing(np.float32(1.0)))
DTYPES = [np.dtype(np.float32), np.dtype(">f4"), np.dtype(np.float64), np.dtype(np.float16)]
EPS = st.sampled_from([0.0, 1e-8, 1e-3, 1.0])

_FINITE32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
_REGIMES = {
    "moderate": st.floats(-100.0, 100.0, width=32),
    "wide": _FINITE32,
    "tiny": st.floats(-2.0**-120, 2.0**-120, width=32),  # includes the denormals
}


@st.composite
def values(draw, shape, nonfinite=False):
    """A float32 array of `shape` in one value regime, optionally with one NaN or +-inf."""
    regime = draw(st.sampled_from(["moderate", "moderate", "wide", "tiny", "constant"]))
    if regime == "constant":
        arr = np.full(shape, draw(_FINITE32), dtype=np.float32)
    else:
        arr = draw(hnp.arrays(np.float32, shape, elements=_REGIMES[regime]))
    if nonfinite and arr.size and draw(st.booleans()):
        arr.flat[draw(st.integers(0, arr.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return arr


@st.composite
def laid_out(draw, arr):
    """`arr` converted to a drawn dtype, as a view with drawn (possibly negative) strides."""
    arr = arr.astype(draw(st.sampled_from(DTYPES)))
    steps = [draw(st.sampled_from([1, 1, 2, -1, -2])) for _ in range(arr.ndim)]
    base = np.full([n * abs(s) for n, s in zip(arr.shape, steps)], 7777, dtype=arr.dtype)
    index = tuple(slice(None, None, s) for s in steps)
    base[index] = arr
    view = base[index]
    if draw(st.booleans()):
        view = np.asfortranarray(view)
    assert view.shape == arr.shape
    return view


def _oracle_input(x):
    return np.ascontiguousarray(x).astype(np.float32)


def _assert_output(got, shape):
    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    assert got.shape == shape and got.flags.c_contiguous and got.flags.owndata


def _assert_close(got, want, tol):
    """Same non-finite positions, and |got - want| <= tol wherever want is finite."""
    fin = np.isfinite(want)
    np.testing.assert_array_equal(np.isfinite(got), fin)
    err = np.abs(got.astype(np.float64) - want.astype(np.float64))
    tol = np.broadcast_to(tol, want.shape)
    bad = fin & ~(err <= tol)
    assert not bad.any(), (
        f"{bad.sum()} values off: got {got[bad][:5]}, want {want[bad][:5]}, tol {tol[bad][:5]}")


def _ulp(want):
    return np.spacing(np.abs(want.astype(np.float32))).astype(np.float64)


def _finite_abs_max(maps):
    """max |x| over the finite values of each (h, w) map, shape (N, 1, 1)."""
    a = np.where(np.isfinite(maps), np.abs(maps.astype(np.float64)), 0.0)
    return a.max(axis=(-2, -1), keepdims=True)


# ----------------------------------------------------------------------------- combine


@st.composite
def combine_case(draw, pixelwise):
    n, k, g = draw(st.integers(0, 3)), draw(st.integers(0, 5)), draw(st.integers(0, 4))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    a = draw(values((n, k, h, w), nonfinite=True))
    wshape = (n, g, k, h, w) if pixelwise else (n, g, k)
    wt = draw(values(wshape, nonfinite=True))
    return draw(laid_out(a)), draw(laid_out(wt)), draw(st.booleans())


def _check_sums(got, want, scale):
    _assert_output(got, want.shape)
    _assert_close(got, want, _ulp(want) + 1e-12 * scale)
    nonfin = ~np.isfinite(want)
    np.testing.assert_array_equal(got[nonfin], want[nonfin])


@given(combine_case(pixelwise=False))
def test_combine(case):
    a, w, relu = case
    a32, w32 = _oracle_input(a), _oracle_input(w)
    with np.errstate(all="ignore"):
        want = ref.combine(a32, w32, relu)
        scale = np.einsum("ngk,nkhw->nghw", np.abs(w32.astype(np.float64)),
                          np.abs(a32.astype(np.float64)))
    _check_sums(kernels.combine(a, w, relu=relu), want, scale)


@given(combine_case(pixelwise=True))
def test_combine_pixelwise(case):
    a, p, relu = case
    a32, p32 = _oracle_input(a), _oracle_input(p)
    with np.errstate(all="ignore"):
        want = ref.combine_pixelwise(a32, p32, relu)
        scale = (np.maximum(p32.astype(np.float64), 0) * np.abs(a32.astype(np.float64))[:, None]
                 ).sum(axis=2)
    _check_sums(kernels.combine_pixelwise(a, p, relu=relu), want, scale)


# ----------------------------------------------------------------------------- resize


@st.composite
def maps_case(draw, nonfinite=True, max_n=3):
    n, h, w = draw(st.integers(0, max_n)), draw(st.integers(1, 9)), draw(st.integers(1, 9))
    size = (draw(st.integers(1, 40)), draw(st.integers(1, 40)))
    maps = draw(values((n, h, w), nonfinite=nonfinite))
    return draw(laid_out(maps)), size, draw(st.booleans())


@given(maps_case())
def test_resize(case):
    maps, size, align = case
    m32 = _oracle_input(maps)
    with np.errstate(all="ignore"):
        want = ref.resize(m32, size, align)
    got = kernels.resize(maps, size, align_corners=align)
    _assert_output(got, (maps.shape[0],) + size)
    _assert_close(got, want, _ulp(want) + 1e-14 * _finite_abs_max(m32))


@given(maps_case(nonfinite=False))
def test_resize_matches_torch(case):
    maps, size, align = case
    m32 = _oracle_input(maps)
    # float16 may turn values into inf, and torch's (1 - l) * a + l * b may round past FLT_MAX
    assume(m32.shape[0] > 0 and np.isfinite(m32).all() and np.abs(m32).max() < 1e37)
    want = F.interpolate(torch.from_numpy(m32)[:, None], size=size, mode="bilinear",
                         align_corners=align)[:, 0].numpy()
    got = kernels.resize(maps, size, align_corners=align)
    # torch interpolates in float32: a few ulps of the largest value, and its float32 source
    # coordinate; 1e-5 relative to the map's magnitude is the contract.
    _assert_close(got, want, 1e-5 * _finite_abs_max(m32) + 1e-44)


# ----------------------------------------------------------------------------- normalisation


def _assert_policy(got, want):
    """NaN maps and all-zero maps exactly where the twin has them."""
    np.testing.assert_array_equal(np.isnan(got).all(axis=(1, 2)), np.isnan(want).all(axis=(1, 2)))
    assert not np.isinf(got).any()
    assert np.isnan(got[np.isnan(got).any(axis=(1, 2))]).all()


@given(maps_case(), EPS)
def test_minmax(case, eps):
    maps, _, _ = case
    m32 = _oracle_input(maps)
    want = ref.minmax(m32, eps)
    got = kernels.minmax(maps, eps=eps)
    _assert_output(got, maps.shape)
    _assert_policy(got, want)
    _assert_close(got, want, ULP1)
    equal = (m32.max(axis=(1, 2)) == m32.min(axis=(1, 2))) & np.isfinite(m32).all(axis=(1, 2))
    assert (got[equal] == 0).all()


def _postprocess_tol(m32, size, relu, eps, align):
    """ulp(1) + 1e-14 * max|x| / (max - min + eps) per map, from the twin's resized map."""
    m = np.maximum(m32.astype(np.float64), 0) if relu else m32.astype(np.float64)
    with np.errstate(all="ignore"):
        r = ref._resize64(m, size, align)
    rng = np.nanmax(r, axis=(1, 2), keepdims=True) - np.nanmin(r, axis=(1, 2), keepdims=True)
    with np.errstate(all="ignore"):
        return 1e-14 * _finite_abs_max(m) / (rng + eps), rng


@given(maps_case(), st.booleans(), EPS)
def test_postprocess(case, relu, eps):
    maps, size, align = case
    m32 = _oracle_input(maps)
    with np.errstate(all="ignore"):
        want = ref.postprocess(m32, size, relu, eps, align)
    got = kernels.postprocess(maps, size, relu=relu, eps=eps, align_corners=align)
    _assert_output(got, (maps.shape[0],) + size)
    _assert_policy(got, want)
    amp, _ = _postprocess_tol(m32, size, relu, eps, align)
    _assert_close(got, want, ULP1 + np.nan_to_num(amp, nan=np.inf))


@st.composite
def layers_case(draw):
    n, n_layers = draw(st.integers(0, 3)), draw(st.integers(1, 3))
    size = (draw(st.integers(1, 30)), draw(st.integers(1, 30)))
    layers = []
    for _ in range(n_layers):
        shape = (n, draw(st.integers(1, 8)), draw(st.integers(1, 8)))
        layers.append(draw(laid_out(draw(values(shape, nonfinite=True)))))
    return layers, size, draw(st.booleans()), draw(st.booleans())


@given(layers_case(), EPS)
def test_fuse_layers(case, eps):
    layers, size, relu, align = case
    l32 = [_oracle_input(m) for m in layers]
    with np.errstate(all="ignore"):
        want = ref.fuse_layers(l32, size, relu, eps, align)
        parts = [ref._postprocess64(m, size, relu, eps, align) for m in l32]
        mean = np.mean(parts, axis=0)
        rng = (np.nanmax(mean, axis=(1, 2), keepdims=True)
               - np.nanmin(mean, axis=(1, 2), keepdims=True))
        layer_err = max(np.nan_to_num(_postprocess_tol(m, size, relu, eps, align)[0], nan=0.0,
                                      posinf=np.inf).max(initial=0.0) for m in l32)
        tol = ULP1 + np.nan_to_num((layer_err + 1e-15) / (rng + eps), nan=np.inf)
    got = kernels.fuse_layers(layers, size, relu=relu, eps=eps, align_corners=align)
    _assert_output(got, (layers[0].shape[0],) + size)
    _assert_policy(got, want)
    _assert_close(got, want, tol)
