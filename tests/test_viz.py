"""finercam.viz: overlays, grids and curves checked against hand computations and NumPy twins."""
import io
import os
import subprocess
import sys

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pytest
import torch
from matplotlib import colormaps
from matplotlib.collections import PolyCollection
from PIL import Image

from finercam import _twins
from finercam import viz

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)


def test_import_finercam_does_not_import_matplotlib():
    r = _run("import sys, finercam; print('matplotlib' in sys.modules)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_viz_without_matplotlib_says_how_to_install():
    r = _run("import sys; sys.modules['matplotlib'] = None\n"
             "try:\n    import finercam.viz\nexcept ImportError as e:\n    print(e)")
    assert r.returncode == 0, r.stderr
    assert "pip install finercam[viz]" in r.stdout


def test_overlay_is_the_alpha_blend_of_the_colormap():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    cam = rng.random((5, 7)).astype(np.float32)
    cam[0, 0], cam[0, 1] = 0.0, 1.0
    out = viz.overlay(img, cam, alpha=0.3)
    jet = colormaps["jet"]
    want = 0.7 * img / 255.0 + 0.3 * jet(cam)[..., :3]
    np.testing.assert_allclose(out, want, atol=1e-6)
    # jet's endpoints, written out: dark blue at 0, dark red at 1.
    np.testing.assert_allclose(out[0, 0], 0.7 * img[0, 0] / 255.0 + 0.3 * np.array([0, 0, 0.5]),
                               atol=1e-6)
    np.testing.assert_allclose(out[0, 1], 0.7 * img[0, 1] / 255.0 + 0.3 * np.array([0.5, 0, 0]),
                               atol=1e-6)


def test_overlay_alpha_extremes_and_clipping():
    img = np.full((3, 3, 3), 0.25, np.float32)
    cam = np.array([[-1.0, 0.5, 2.0]] * 3, np.float32)
    np.testing.assert_allclose(viz.overlay(img, cam, alpha=0.0), img, atol=0)
    gray = viz.overlay(img, cam, alpha=1.0, cmap="gray")
    np.testing.assert_allclose(gray[0, :, 0], [0.0, colormaps["gray"](0.5)[0], 1.0], atol=1e-6)


def test_overlay_resizes_the_map_bilinearly():
    rng = np.random.default_rng(1)
    img = rng.random((16, 12, 3)).astype(np.float32)
    cam = rng.random((4, 4)).astype(np.float32)
    big = _twins.resize(cam[None], (16, 12))[0]
    want = 0.5 * img + 0.5 * colormaps["viridis"](np.clip(big, 0, 1))[..., :3]
    np.testing.assert_allclose(viz.overlay(img, cam, cmap="viridis"), want, atol=1e-5)


def test_image_layouts_agree():
    rng = np.random.default_rng(2)
    hwc = rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)
    want = hwc / 255.0
    chw_tensor = torch.from_numpy(hwc).permute(2, 0, 1).float() / 255.0
    np.testing.assert_allclose(viz.to_image(chw_tensor), want, atol=1e-6)
    np.testing.assert_allclose(viz.to_image(chw_tensor[None]), want, atol=1e-6)
    np.testing.assert_allclose(viz.to_image(np.moveaxis(hwc, -1, 0)), want, atol=1e-6)
    rgba = np.concatenate([hwc, np.full((6, 9, 1), 7, np.uint8)], axis=-1)
    np.testing.assert_allclose(viz.to_image(rgba), want, atol=1e-6)
    np.testing.assert_allclose(viz.to_image(Image.fromarray(hwc)), want, atol=1e-6)
    gray = viz.to_image(hwc[..., 0])
    np.testing.assert_allclose(gray, np.repeat(want[..., :1], 3, -1), atol=1e-6)
    # A 3x3x3 array is read as HWC unless told otherwise.
    cube = rng.random((3, 3, 3)).astype(np.float32)
    np.testing.assert_allclose(viz.to_image(cube), cube)
    np.testing.assert_allclose(viz.to_image(cube, layout="CHW"), np.moveaxis(cube, 0, -1))


def test_normalised_float_input_is_rescaled_for_display():
    x = np.array([[[-2.0, 0.0, 2.0]]], np.float32).repeat(3, 0)  # CHW, values outside [0, 1]
    out = viz.to_image(x, layout="CHW")
    np.testing.assert_allclose(out[0, :, 0], [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(viz.to_uint8(x.transpose(1, 2, 0))[0, :, 0], [0, 128, 255])


def test_nan_map_pixels_leave_the_image_unchanged():
    img = np.full((2, 2, 3), 0.4, np.float32)
    cam = np.array([[np.nan, 1.0], [0.0, np.nan]], np.float32)
    out = viz.overlay(img, cam, alpha=0.6)
    np.testing.assert_allclose(out[0, 0], img[0, 0])
    np.testing.assert_allclose(out[1, 1], img[1, 1])
    assert not np.allclose(out[0, 1], img[0, 1])


@pytest.mark.parametrize("kwargs, exc, word", [
    (dict(alpha=1.5), ValueError, "alpha"),
    (dict(alpha="0.5"), TypeError, "alpha"),
    (dict(cmap="no-such-map"), ValueError, "cmap"),
    (dict(cmap=3), TypeError, "cmap"),
])
def test_overlay_rejects_bad_arguments(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        viz.overlay(np.zeros((4, 4, 3)), np.zeros((4, 4)), **kwargs)


@pytest.mark.parametrize("image, cam, exc, word", [
    (np.zeros((6, 6, 5)), np.zeros((4, 4)), ValueError, "image"),
    (np.zeros((2, 4, 4, 3)), np.zeros((4, 4)), ValueError, "image"),
    (np.full((4, 4, 3), 300, np.int32), np.zeros((4, 4)), ValueError, "image"),
    (np.zeros((4, 4, 3)), np.zeros((2, 4, 4)), ValueError, "cam"),
    (np.zeros((4, 4, 3)), np.zeros((0, 4)), ValueError, "cam"),
    (np.zeros((4, 4, 3)), np.array([["a"]]), TypeError, "cam"),
    (np.full((4, 4, 3), np.nan), np.zeros((4, 4)), ValueError, "image"),
])
def test_overlay_rejects_bad_inputs(image, cam, exc, word):
    with pytest.raises(exc, match=word):
        viz.overlay(image, cam)


def test_similarity_curve_by_hand():
    # w0 = (1, 0), w1 = (1, 1), w2 = (0, 1): cos(0,1) = cos(1,2) = 1/sqrt(2), cos(0,2) = 0.
    r = 1 / np.sqrt(2)
    mean, std = viz.similarity_curve([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    # Sorted rows of S - I: [r, 0, 0], [r, r, 0], [r, 0, 0].
    np.testing.assert_allclose(mean, [r, r / 3, 0.0], atol=1e-6)
    np.testing.assert_allclose(std, [0.0, np.sqrt(2 / 9) * r, 0.0], atol=1e-6)
    mean, std = viz.similarity_curve([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], exclude_self=True)
    np.testing.assert_allclose(mean, [r, r / 3], atol=1e-6)


def test_similarity_curve_against_a_loop_oracle():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(7, 5))
    c = w.shape[0]
    rows = []
    for p in range(c):
        row = []
        for q in range(c):
            dot = sum(w[p, k] * w[q, k] for k in range(5))
            cos = dot / (np.sqrt(sum(v * v for v in w[p])) * np.sqrt(sum(v * v for v in w[q])))
            row.append(cos - (1.0 if p == q else 0.0))
        rows.append(sorted(row, reverse=True))
    rows = np.array(rows)
    mean, std = viz.similarity_curve(torch.from_numpy(w))
    np.testing.assert_allclose(mean, rows.mean(0), atol=1e-6)
    np.testing.assert_allclose(std, np.sqrt(((rows - rows.mean(0)) ** 2).mean(0)), atol=1e-6)


@pytest.mark.parametrize("w, exc", [
    (np.zeros((3, 2)), ValueError), (np.ones((1, 4)), ValueError), (np.ones(4), ValueError),
    (np.array([[1.0, np.nan], [1.0, 2.0]]), ValueError),
])
def test_similarity_curve_rejects_bad_weights(w, exc):
    with pytest.raises(exc, match="weights"):
        viz.similarity_curve(w)


def test_plot_similarity_curve_draws_mean_and_band():
    mean, std = np.array([0.8, 0.3, 0.1]), np.array([0.1, 0.05, 0.0])
    fig = viz.plot_similarity_curve({"cnn": (mean, std)})
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), mean)
    band = [c for c in ax.collections if isinstance(c, PolyCollection)][0]
    ys = band.get_paths()[0].vertices[:, 1]
    assert np.isclose(ys.max(), 0.9) and np.isclose(ys.min(), 0.1)


def test_deletion_curves_shade_the_gap_up_to_the_limit():
    x = np.linspace(0, 1, 11)
    t, s = 1.0 - 0.9 * x, 0.2 + 0.1 * x
    fig = viz.deletion_curves(x, t, s, upto=0.2, title="Grad-CAM")
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), t)
    np.testing.assert_allclose(ax.lines[1].get_ydata(), s)
    verts = [c for c in ax.collections if isinstance(c, PolyCollection)][0].get_paths()[0].vertices
    assert np.isclose(verts[:, 0].max(), 0.2)
    # The shaded polygon runs along both curves: its y range is [s(0), t(0)] on [0, 0.2].
    assert np.isclose(verts[:, 1].max(), 1.0) and np.isclose(verts[:, 1].min(), 0.2)
    with pytest.raises(ValueError, match="second"):
        viz.deletion_curves(x, t, s[:5])


def _png_pixels(fig) -> np.ndarray:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


def test_panel_grid_places_images_and_titles():
    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    b = rng.random((3, 10, 6)).astype(np.float32)
    fig = viz.panel_grid([[a, b], [None, a]], titles=[["a", "b"], [None, "again"]],
                         row_labels=["one", "two"], suptitle="grid")
    axes = fig.axes
    assert len(axes) == 4
    np.testing.assert_allclose(axes[0].images[0].get_array(), a / 255.0, atol=1e-6)
    np.testing.assert_allclose(axes[1].images[0].get_array(), np.moveaxis(b, 0, -1))
    assert [ax.get_title() for ax in axes] == ["a", "b", "", "again"]
    assert not axes[2].images
    px = _png_pixels(fig)
    assert px.std() > 10  # something was drawn
    with pytest.raises(ValueError, match="titles"):
        viz.panel_grid([[a, b]], titles=[["only one"]])


def test_gamma_sweep_and_compare_rows():
    img = np.zeros((8, 8, 3), np.float32)
    maps = np.stack([np.full((4, 4), g, np.float32) for g in (0.0, 0.5, 1.0)])
    fig = viz.gamma_sweep(img, maps, [0.0, 0.5, 1.0], alpha=1.0)
    assert [ax.get_title() for ax in fig.axes] == ["image", "\u03b3 = 0.0", "\u03b3 = 0.5",
                                                   "\u03b3 = 1.0"]
    np.testing.assert_allclose(fig.axes[3].images[0].get_array()[0, 0],
                               colormaps["jet"](1.0)[:3], atol=1e-6)
    with pytest.raises(ValueError, match="gammas"):
        viz.gamma_sweep(img, maps, [0.0, 1.0])
    fig = viz.compare(img, {"base": maps[0], "finer": maps[2]})
    assert [ax.get_title() for ax in fig.axes] == ["image", "base", "finer"]
