"""The C core leaves its inputs alone, leaks nothing and is safe to call from several threads."""
import gc
import resource
import sys
import threading

import numpy as np
import pytest

from finercam import _twins as ref
from finercam import kernels


def _inputs():
    rng = np.random.default_rng(7)
    a = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
    a[1, 2, 0, 0] = np.nan  # the non-finite paths run too
    w = rng.standard_normal((2, 2, 3)).astype(np.float32)
    p = rng.standard_normal((2, 2, 3, 5, 4)).astype(np.float32)
    m = rng.standard_normal((3, 5, 4)).astype(np.float32)
    m[2, 1, 1] = np.inf
    m2 = rng.standard_normal((3, 2, 3)).astype(np.float32)
    return a, w, p, m, m2


def _calls():
    """name -> (function, positional args, keyword args, twin)."""
    a, w, p, m, m2 = _inputs()
    return {
        "combine": (kernels.combine, (a, w), {"relu": True}, lambda: ref.combine(a, w, True)),
        "combine_pixelwise": (kernels.combine_pixelwise, (a, p), {"relu": True},
                              lambda: ref.combine_pixelwise(a, p, True)),
        "resize": (kernels.resize, (m, (9, 7)), {}, lambda: ref.resize(m, (9, 7))),
        "minmax": (kernels.minmax, (m,), {}, lambda: ref.minmax(m)),
        "postprocess": (kernels.postprocess, (m, (9, 7)), {},
                        lambda: ref.postprocess(m, (9, 7))),
        "fuse_layers": (kernels.fuse_layers, ([m, m2], (9, 7)), {},
                        lambda: ref.fuse_layers([m, m2], (9, 7))),
    }


NAMES = list(_calls())


def _arrays(args):
    out = []
    for x in args:
        if isinstance(x, np.ndarray):
            out.append(x)
        elif isinstance(x, list):
            out.extend(x)
    return out


def _layouts(x):
    """The same values as: a read-only float32 array (used in place), float64 (converted), a
    negatively strided view, a byte-swapped copy."""
    ro = x.copy()
    ro.flags.writeable = False
    return [ro, x.astype(np.float64), np.flip(np.flip(x, 0).copy(), 0), x.astype(">f4")]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("layout", range(4))
def test_inputs_not_modified(name, layout):
    fn, args, kwargs, twin = _calls()[name]

    def relayout(v):
        if isinstance(v, np.ndarray):
            return _layouts(v)[layout]
        if isinstance(v, list):
            return [_layouts(e)[layout] for e in v]
        return v

    args = tuple(relayout(v) for v in args)
    before = [x.copy() for x in _arrays(args)]
    with np.errstate(all="ignore"):
        got = fn(*args, **kwargs)
        want = twin()
    for x, b in zip(_arrays(args), before):
        assert x.dtype == b.dtype and x.tobytes() == b.tobytes()
        assert not np.shares_memory(got, x)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def _refcounts(objs):
    gc.collect()
    return [sys.getrefcount(o) for o in objs]


@pytest.mark.parametrize("name", NAMES)
def test_refcounts_stable_over_10000_calls(name):
    fn, args, kwargs, _twin = _calls()[name]  # the twin's closure holds references too: keep it
    watched = list(args) + _arrays(args)
    before = _refcounts(watched)
    with np.errstate(all="ignore"):
        for _i in range(10_000):
            fn(*args, **kwargs)
    assert _refcounts(watched) == before


@pytest.mark.parametrize("name", NAMES)
def test_refcounts_stable_over_10000_failing_calls(name):
    """The error exits release what was acquired before the failure."""
    fn, args, kwargs, _twin = _calls()[name]
    # the first array converts fine, then a later argument is bad
    if name in ("combine", "combine_pixelwise"):
        bad_args = (args[0], args[1][:1])  # N mismatch
    elif name == "fuse_layers":
        bad_args = ([args[0][0], args[0][1][:1]], args[1])  # N mismatch in the second layer
    elif name == "minmax":
        bad_args, kwargs = args, {"eps": -1.0}
    else:
        bad_args = (args[0], (0, 7))
    watched = list(bad_args) + _arrays(bad_args)
    before = _refcounts(watched)
    for _i in range(10_000):
        try:
            fn(*bad_args, **kwargs)
        except ValueError:
            pass
    with pytest.raises(ValueError):
        fn(*bad_args, **kwargs)
    assert _refcounts(watched) == before


def test_no_native_leak_over_10000_calls():
    """The resize plans (coefficient tables, scratch) are freed: 10,000 calls that each need
    at least 40 kB of them would leak 400 MB."""
    maps = np.ones((1, 2, 2), np.float32)
    calls = [lambda: kernels.resize(maps, (1, 1000)), lambda: kernels.postprocess(maps, (1, 1000)),
             lambda: kernels.fuse_layers([maps, maps], (1, 1000))]

    def run(n):
        for i in range(n):
            calls[i % 3]()

    run(300)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    run(10_000)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 100


@pytest.mark.parametrize("name", NAMES)
def test_two_threads_match_sequential(name):
    rng = np.random.default_rng(11)
    big = {
        "combine": lambda: (kernels.combine, (rng.standard_normal((4, 64, 14, 14), np.float32),
                                             rng.standard_normal((4, 4, 64), np.float32)), {}),
        "combine_pixelwise": lambda: (kernels.combine_pixelwise,
                                      (rng.standard_normal((2, 16, 14, 14), np.float32),
                                       rng.standard_normal((2, 4, 16, 14, 14), np.float32)), {}),
        "resize": lambda: (kernels.resize, (rng.standard_normal((8, 7, 7), np.float32), 224), {}),
        "minmax": lambda: (kernels.minmax, (rng.standard_normal((8, 224, 224), np.float32),), {}),
        "postprocess": lambda: (kernels.postprocess,
                                (rng.standard_normal((8, 7, 7), np.float32), 224), {}),
        "fuse_layers": lambda: (kernels.fuse_layers,
                                ([rng.standard_normal((8, 7, 7), np.float32),
                                  rng.standard_normal((8, 14, 14), np.float32)], 224), {}),
    }[name]
    jobs = [big(), big()]
    sequential = [fn(*args, **kw) for fn, args, kw in jobs]
    results = [[], []]
    barrier = threading.Barrier(2)

    def worker(i):
        fn, args, kw = jobs[i]
        barrier.wait()
        for _ in range(6):
            results[i].append(fn(*args, **kw))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):
        assert len(results[i]) == 6
        for r in results[i]:
            np.testing.assert_array_equal(r, sequential[i])


def _slow_call(name):
    """A call of a few milliseconds: long enough for a waiting thread to be scheduled inside it."""
    f32 = np.float32
    return {
        "combine": lambda: (kernels.combine, (np.ones((2, 512, 32, 32), f32),
                                              np.ones((2, 8, 512), f32))),
        "combine_pixelwise": lambda: (kernels.combine_pixelwise,
                                      (np.ones((1, 64, 64, 64), f32),
                                       np.ones((1, 4, 64, 64, 64), f32))),
        "resize": lambda: (kernels.resize, (np.ones((16, 7, 7), f32), 512)),
        "minmax": lambda: (kernels.minmax, (np.ones((16, 512, 512), f32),)),
        "postprocess": lambda: (kernels.postprocess, (np.eye(7, dtype=f32)[None].repeat(16, 0), 512)),
        "fuse_layers": lambda: (kernels.fuse_layers, ([np.eye(7, dtype=f32)[None].repeat(8, 0),
                                                       np.ones((8, 14, 14), f32)], 512)),
    }[name]()


@pytest.mark.parametrize("name", NAMES)
def test_gil_is_released_while_computing(name):
    """With the switch interval at 100 s the interpreter never takes the GIL from a thread by
    itself: the main thread can only run while the worker is inside its 40 kernel calls if the
    kernels release the GIL. No clock is read; the worker's call count is what decides."""
    fn, args = _slow_call(name)
    started = threading.Event()
    calls_done = []

    def worker():
        started.set()
        for _ in range(40):
            fn(*args)
            calls_done.append(1)

    previous = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    try:
        thread = threading.Thread(target=worker)
        thread.start()
        started.wait()
        seen = len(calls_done)  # the main thread runs again: how far is the worker?
        thread.join()
    finally:
        sys.setswitchinterval(previous)
    assert len(calls_done) == 40
    assert seen < 40, "the main thread only ran after the worker finished: GIL not released"
