"""The threaded ranking and masking kernels: the same results with 1, 2, 3 and 8 threads, equal to
the NumPy twins, and the thread setting (finercam.kernels.set_num_threads / get_num_threads).

A call stays on one thread below 65,536 pixels of work, so the batches here are drawn above that
(one large map; a few maps; thousands of tiny ones) or on purpose just below it.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finercam import _twins as ref
from finercam import kernels

THREADS = (1, 2, 3, 8)
# the `threads` fixture restores the setting once after all examples; each example sets every
# count it uses, so sharing the fixture across examples is intended
FEW = settings(max_examples=12, deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture])
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def threads():
    """Gives the test kernels.set_num_threads and puts the process's setting back afterwards."""
    before = kernels.get_num_threads()
    yield kernels.set_num_threads
    kernels.set_num_threads(before)


@st.composite
def batches(draw):
    """(N, H, W) float32 maps over the thread threshold: one large map (N below the thread
    count), a few maps, or thousands of tiny maps; tied values (both zero signs, +-inf, NaN) or
    continuous ones. Returned with a seed for the images."""
    regime = draw(st.sampled_from(["one", "few", "tiny"]))
    if regime == "one":
        n, h, w = 1, draw(st.integers(200, 300)), draw(st.integers(220, 300))
    elif regime == "few":
        n, h, w = draw(st.integers(2, 5)), draw(st.integers(110, 170)), draw(st.integers(120, 170))
    else:
        h, w = draw(st.sampled_from([(1, 1), (1, 4), (2, 2), (3, 1), (2, 3)]))
        n = draw(st.integers(70_000 // (h * w), 90_000 // (h * w)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):
        values = np.array([0.0, -0.0, 0.5, 1.0, -2.0, 3e-38, np.inf, -np.inf, np.nan], np.float32)
        maps = values[rng.integers(0, len(values), (n, h, w))]
    else:
        maps = rng.random((n, h, w), dtype=np.float32)
    return maps, int(rng.integers(0, 2**32 - 1))


@FEW
@given(batches())
def test_ranking_is_the_same_with_every_thread_count_and_equals_the_twin(threads, batch):
    maps, _ = batch
    want_order, want_rank = ref.argsort_desc(maps), ref.rank_desc(maps)
    for n in THREADS:
        threads(n)
        np.testing.assert_array_equal(kernels.argsort_desc(maps), want_order, err_msg=f"{n} threads")
        np.testing.assert_array_equal(kernels.rank_desc(maps).reshape(len(maps), -1), want_rank,
                                      err_msg=f"{n} threads")


@FEW
@given(batches(), st.data())
def test_mask_top_is_the_same_with_every_thread_count_and_equals_the_twin(threads, batch, data):
    maps, seed = batch
    n, h, w = maps.shape
    rng = np.random.default_rng(seed)
    c = 1 if n > 1000 else data.draw(st.integers(1, 3))
    images = rng.standard_normal((n, c, h, w)).astype(np.float32)
    base = rng.standard_normal((n, c, h, w)).astype(np.float32)
    base[..., :1] = np.nan  # bits are copied: NaN in the baseline comes through unchanged
    pixels = st.integers(0, h * w)
    counts = data.draw(st.lists(st.one_of(pixels, st.just(h * w), st.just(0)), min_size=1,
                                max_size=3 if n > 1000 else 6))
    want = ref.mask_top(images, maps, base, counts)
    for t in THREADS:
        threads(t)
        got = kernels.mask_top(images, maps, base, counts)
        assert got.tobytes() == want.tobytes(), f"{t} threads"


def test_many_counts_single_image_and_misaligned_buffer(threads):
    """Deletion-like: 21 counts up to every pixel, one image (only the planes can be split), into
    a preallocated buffer whose planes start off the 16-byte grid (the fill's scalar head)."""
    rng = np.random.default_rng(7)
    h = w = 67
    maps = rng.random((1, h, w), dtype=np.float32)
    maps[0, 10:20] = 0.5  # a block of ties
    images = rng.standard_normal((1, 3, h, w)).astype(np.float32)
    base = np.zeros_like(images)
    counts = -((-np.arange(21) * h * w) // 20)
    want = ref.mask_top(images, maps, base, counts)
    raw = np.empty(want.size + 1, np.float32)
    out = raw[1:].reshape(want.shape)
    assert out.ctypes.data % 16 != 0
    for t in THREADS:
        threads(t)
        out.fill(7.0)
        assert kernels.mask_top(images, maps, base, counts, out=out) is out
        np.testing.assert_array_equal(out, want, err_msg=f"{t} threads")


def test_small_jobs_and_empty_batches_with_many_threads(threads):
    threads(8)
    m = np.array([[[0.5, 1.0], [0.5, 0.0]]], np.float32)  # below the threshold: one thread
    assert kernels.argsort_desc(m).tolist() == [[1, 0, 2, 3]]
    assert kernels.argsort_desc(np.zeros((0, 3, 3), np.float32)).shape == (0, 9)
    img = np.zeros((2, 1, 3, 3), np.float32)
    assert kernels.mask_top(img, np.zeros((2, 3, 3), np.float32), img, []).shape == (0, 1, 3, 3)


def test_set_num_threads_sets_and_the_fixture_restores(threads):
    for n in (1, 3, np.int64(2)):
        threads(n)
        assert kernels.get_num_threads() == n
    assert isinstance(kernels.get_num_threads(), int)


@pytest.mark.parametrize("bad, exc, match", [
    (0, ValueError, "n must be positive"),
    (-3, ValueError, "n must be positive"),
    (1025, ValueError, "n must be at most 1024"),
    (2**70, ValueError, "n is too large"),
    (2.0, TypeError, "n must be an int"),
    ("2", TypeError, "n must be an int"),
    (True, TypeError, "n must be an int"),
    (None, TypeError, "n must be an int"),
])
def test_set_num_threads_rejects_bad_values_naming_n(threads, bad, exc, match):
    threads(3)
    with pytest.raises(exc, match=match):
        kernels.set_num_threads(bad)
    assert kernels.get_num_threads() == 3  # unchanged by a refused value


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity")
def test_default_is_the_cpus_of_the_affinity_mask_at_most_8():
    """A fresh interpreter pinned to one CPU defaults to one thread; unpinned, to its CPUs."""
    code = "from finercam import _core; print(_core.get_num_threads())"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    pinned = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, check=True,
                            preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}))
    assert pinned.stdout.strip() == "1"
    free = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True)
    assert free.stdout.strip() == str(min(len(os.sched_getaffinity(0)), 8))
