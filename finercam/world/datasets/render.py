"""Vectorised NumPy renderer of the bird world: one call draws a whole batch.

An image is composed in three layers, each a pure function of the sampled parameters:

1. **albedo**: a cluttered, textured background (low-frequency colour field x two gratings, leaf
   ellipses in scene and bird colours, a branch), then the bird's parts back to front, each a
   flat colour (the class colour plus a small per-image jitter);
2. **shade**: brightness x a linear lighting gradient of random direction, and a colour tint;
3. **noise**: Gaussian sensor noise.

``image = clip(albedo * shade * tint + noise, 0, 1)``.  Every part is drawn in the bird's own frame
``(u, v)`` (``u`` towards the beak, ``v`` down), reached from the pixel grid by translation,
rotation, scale and mirroring; the head, crest, beak and eye also turn with a head tilt, the wing
and tail with their own angles.  A part's mask holds the pixels where it is visible (not hidden by a
part drawn later).

All sizes below are in pixels at scale 1 of a 96 x 96 image.
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from . import birds

_P = {p: i for i, p in enumerate(birds.PARTS)}
_COLOUR_RGB = np.array([birds.COLOURS[c] for c in birds.COLOUR_NAMES], dtype=np.float32)

# Per-shape geometry tables.
_BODY_AXES = {"plump": (15.0, 11.0), "slender": (16.0, 7.5), "long": (19.0, 8.5), "stocky": (13.5, 10.0)}
_HEAD_RADIUS = {"small": 6.2, "large": 8.0}
# beak: (half-width of the base / head radius, length beyond the head, tip drop / head radius)
_BEAK = {"conical": (0.50, 7.0, 0.05), "thin": (0.18, 7.5, 0.10), "long": (0.28, 13.0, 0.10),
         "hooked": (0.42, 8.0, 1.00)}
# crest tip in the head frame, in head radii (the base is fixed and hidden under the head)
_CREST_TIP = {"short": (-0.6, -1.6), "tall": (0.0, -2.8), "swept": (-2.4, -1.7)}
# wing: centre (in body axes), semi-axes (in body axes)
_WING = {"rounded": ((-0.12, -0.12), (0.62, 0.55)), "pointed": ((-0.32, -0.12), (0.88, 0.40))}
# tail: length, half-width at the base, half-width at the end, notch depth
_TAIL = {"forked": (14.0, 3.0, 7.0, 6.0), "fan": (11.0, 2.0, 0.0, 0.0), "long": (23.0, 2.5, 3.5, 0.0),
         "short": (7.5, 3.0, 5.0, 0.0)}
_FAN_HALF_ANGLE = np.tan(np.deg2rad(40.0))

_SCENES = np.array([
    (0.25, 0.42, 0.18),  # foliage
    (0.58, 0.68, 0.82),  # sky
    (0.40, 0.30, 0.20),  # bark
    (0.72, 0.66, 0.48),  # sand
    (0.48, 0.50, 0.50),  # rock
    (0.20, 0.30, 0.25),  # shade
], dtype=np.float32)

N_LEAVES = 8
_GRID = 4  # low-frequency background field: GRID x GRID colour cells, bilinear


def _class_table(fn) -> np.ndarray:
    return np.array([fn(birds.CLASS_PARTS[c]) for c in range(birds.NUM_CLASSES)], dtype=np.float32)


_T_BODY = _class_table(lambda a: _BODY_AXES[a["body"][1]])
_T_HEAD = _class_table(lambda a: _HEAD_RADIUS[a["head"][1]])
_T_BEAK = _class_table(lambda a: _BEAK[a["beak"][1]])
_T_CREST = _class_table(lambda a: _CREST_TIP[a["crest"][1]])
_T_WING = _class_table(lambda a: sum(_WING[a["wing"][1]], ()))
_T_TAIL = _class_table(lambda a: _TAIL[a["tail"][1]])
_T_FAN = _class_table(lambda a: a["tail"][1] == "fan")
_T_COLOUR = np.array([[_COLOUR_RGB[birds.COLOUR_NAMES.index(birds.CLASS_PARTS[c][p][0])]
                       for p in birds.PARTS] for c in range(birds.NUM_CLASSES)], dtype=np.float32)


def sample_params(labels: np.ndarray, rng: np.random.Generator, size: int = 96) -> Dict[str, np.ndarray]:
    """Draw every random quantity of a batch (the only place randomness enters).

    Draw order is fixed, so a generator seeded the same way gives the same batch.

    >>> labels = np.array([0, 3])
    >>> p = sample_params(labels, np.random.default_rng(0), size=32)
    >>> q = sample_params(labels, np.random.default_rng(0), size=32)
    >>> p["labels"].tolist(), int(p["size"]), p["centre"].shape
    ([0, 3], 32, (2, 2))
    >>> all(np.array_equal(p[k], q[k]) for k in p)
    True
    """
    n = len(labels)
    k = size / 96.0
    u = lambda lo, hi, *shape: rng.uniform(lo, hi, (n,) + shape).astype(np.float32)  # noqa: E731
    p: Dict[str, np.ndarray] = {"labels": np.asarray(labels, dtype=np.int64), "size": np.array(size)}
    p["scale"] = u(0.72, 1.12) * k
    p["theta"] = u(-0.5, 0.5)
    p["mirror"] = np.where(rng.random(n) < 0.5, -1.0, 1.0).astype(np.float32)
    p["centre"] = u(-13.0, 13.0, 2) * k
    p["aspect"] = u(0.92, 1.08, 2)
    p["head_shift"] = np.clip(rng.normal(0.0, 1.0, (n, 2)), -2, 2).astype(np.float32)
    p["head_tilt"] = u(-0.35, 0.35)
    p["wing_angle"] = u(-0.35, 0.1)
    p["tail_angle"] = u(0.0, 0.5)
    p["colour_jitter"] = rng.normal(0.0, 0.035, (n, len(birds.PARTS), 3)).astype(np.float32)
    # background
    p["scene"] = rng.integers(0, len(_SCENES), n)
    p["field_light"] = rng.normal(0.0, 0.12, (n, 1, _GRID, _GRID)).astype(np.float32)
    p["field_colour"] = rng.normal(0.0, 0.05, (n, 3, _GRID, _GRID)).astype(np.float32)
    p["grating_freq"] = u(0.04, 0.3, 2)
    p["grating_orient"] = u(0.0, np.pi, 2)
    p["grating_phase"] = u(0.0, 2 * np.pi, 2)
    p["grating_amp"] = u(0.02, 0.12, 2)
    p["leaf_centre"] = u(-size / 2, size / 2, N_LEAVES, 2)
    p["leaf_axes"] = u(2.0, 10.0, N_LEAVES, 2) * k
    p["leaf_angle"] = u(0.0, np.pi, N_LEAVES)
    p["leaf_bird_colour"] = rng.random((n, N_LEAVES)) < 0.5
    p["leaf_colour_index"] = rng.integers(0, len(_COLOUR_RGB), (n, N_LEAVES))
    p["leaf_scene_jitter"] = rng.normal(0.0, 0.12, (n, N_LEAVES, 3)).astype(np.float32)
    p["branch"] = rng.random(n) < 0.7
    p["branch_angle"] = u(0.0, np.pi)
    p["branch_offset"] = u(-0.45 * size, 0.45 * size)
    p["branch_width"] = u(1.2, 3.5) * k
    p["branch_colour"] = (np.array([0.35, 0.25, 0.17], np.float32) + rng.normal(0, 0.07, (n, 3))).astype(np.float32)
    # lighting and noise
    p["brightness"] = u(0.6, 1.25)
    p["light_gradient"] = u(0.0, 0.45)
    p["light_angle"] = u(0.0, 2 * np.pi)
    p["tint"] = u(0.88, 1.12, 3)
    p["noise"] = rng.standard_normal((n, 3, size, size), dtype=np.float32)
    p["noise"] *= np.float32(0.03)
    return p


def _col(a: np.ndarray) -> np.ndarray:
    return a[:, None, None]


def _ellipse(x, y, cx, cy, ax, ay, angle=None):
    dx, dy = x - _col(cx), y - _col(cy)
    if angle is not None:
        c, s = _col(np.cos(angle)), _col(np.sin(angle))
        dx, dy = dx * c + dy * s, dy * c - dx * s
    return (dx / _col(ax)) ** 2 + (dy / _col(ay)) ** 2 <= 1.0


def _triangle(x, y, p0, p1, p2):
    """Pixels inside the triangle p0 p1 p2 (each (N, 2)), either winding."""
    def edge(a, b):
        return (x - _col(a[:, 0])) * _col(b[:, 1] - a[:, 1]) - (y - _col(a[:, 1])) * _col(b[:, 0] - a[:, 0])
    e0, e1, e2 = edge(p0, p1), edge(p1, p2), edge(p2, p0)
    return ((e0 >= 0) & (e1 >= 0) & (e2 >= 0)) | ((e0 <= 0) & (e1 <= 0) & (e2 <= 0))


def _rotate(x, y, angle):
    c, s = _col(np.cos(angle)), _col(np.sin(angle))
    return x * c + y * s, y * c - x * s


def _bird_shapes(p: Dict[str, np.ndarray], gx: np.ndarray, gy: np.ndarray) -> Dict[str, np.ndarray]:
    """Full (unoccluded) silhouette of each part, bool (N, H, W)."""
    lab = p["labels"]
    # pixel -> bird frame: undo translation, rotation, scale, mirror
    u, v = _rotate(gx - _col(p["centre"][:, 0]), gy - _col(p["centre"][:, 1]), p["theta"])
    u = u / _col(p["scale"]) * _col(p["mirror"])
    v = v / _col(p["scale"])

    a = _T_BODY[lab, 0] * p["aspect"][:, 0]
    b = _T_BODY[lab, 1] * p["aspect"][:, 1]
    zero = np.zeros_like(a)
    shapes: Dict[str, np.ndarray] = {}
    shapes["body"] = _ellipse(u, v, zero, zero, a, b)
    shapes["breast"] = shapes["body"] & _ellipse(u, v, 0.38 * a, 0.42 * b, 0.55 * a, 0.62 * b)

    w = _T_WING[lab]
    shapes["wing"] = _ellipse(u, v, w[:, 0] * a, w[:, 1] * b, w[:, 2] * a, w[:, 3] * b, p["wing_angle"])

    t = _T_TAIL[lab]
    ax, ay = -0.8 * a, -0.15 * b
    beta = np.pi + p["tail_angle"]
    tu, tn = _rotate(u - _col(ax), v - _col(ay), beta)
    length, hw0, hw1, notch = (_col(t[:, i]) for i in range(4))
    halfwidth = hw0 + (hw1 - hw0) * tu / length
    straight = (tu >= 0) & (tu <= length) & (np.abs(tn) <= halfwidth)
    forked = straight & ~((tu >= length - notch) & (np.abs(tn) * notch <= (tu - length + notch) * 0.75 * hw1))
    fan = (tu >= 0) & (tu * tu + tn * tn <= length * length) & (np.abs(tn) <= tu * _FAN_HALF_ANGLE + hw0)
    shapes["tail"] = np.where(_col(_T_FAN[lab]), fan, forked)

    r = _T_HEAD[lab]
    hx = 0.82 * a + p["head_shift"][:, 0]
    hy = -0.72 * b + p["head_shift"][:, 1]
    shapes["head"] = _ellipse(u, v, hx, hy, r, r)
    # head frame, turned with the tilt, in units of head radii
    hu, hv = _rotate(u - _col(hx), v - _col(hy), p["head_tilt"])
    hu, hv = hu / _col(r), hv / _col(r)
    shapes["eye"] = (hu - 0.38) ** 2 + (hv + 0.22) ** 2 <= 0.28 ** 2
    bk = _T_BEAK[lab]
    n = len(lab)
    pts = lambda x, y: np.stack(np.broadcast_arrays(np.float32(x), np.float32(y), np.empty(n, np.float32))[:2], 1)  # noqa: E731
    shapes["beak"] = _triangle(hu, hv, pts(0.6, 0.05 - bk[:, 0]), pts(0.6, 0.05 + bk[:, 0]),
                               pts(1.0 + bk[:, 1] / r, bk[:, 2]))
    ct = _T_CREST[lab]
    shapes["crest"] = _triangle(hu, hv, pts(-0.6, -0.5), pts(0.3, -0.85), pts(ct[:, 0], ct[:, 1]))
    return shapes


def _leaf_ids(p: Dict[str, np.ndarray], size: int) -> np.ndarray:
    """Index of the topmost leaf at each pixel, -1 where none; int16 (N, S, S).

    Leaves are small, so each is tested only on a window around its centre (not the whole grid).
    """
    n = len(p["labels"])
    ids = np.full((n, size, size), -1, dtype=np.int16)
    half = int(np.ceil(p["leaf_axes"].max())) + 1 if n else 1
    offs = np.arange(-half, half + 1)
    rows = np.arange(n)[:, None, None]
    for j in range(N_LEAVES):
        c = np.floor(p["leaf_centre"][:, j] + size / 2).astype(np.int64)  # (N, 2) pixel of the centre
        px = c[:, 0, None, None] + offs[None, None, :]
        py = c[:, 1, None, None] + offs[None, :, None]
        x = px + 0.5 - size / 2
        y = py + 0.5 - size / 2
        inside = _ellipse(x.astype(np.float32), y.astype(np.float32), p["leaf_centre"][:, j, 0],
                          p["leaf_centre"][:, j, 1], p["leaf_axes"][:, j, 0], p["leaf_axes"][:, j, 1],
                          p["leaf_angle"][:, j])
        inside &= (px >= 0) & (px < size) & (py >= 0) & (py < size)
        r, yy, xx = np.broadcast_arrays(rows, py, px)
        ids[r[inside], yy[inside], xx[inside]] = j
    return ids


def _background(p: Dict[str, np.ndarray], gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Scene colour field x gratings, float32 (N, 3, S, S) (leaves and branch are added later)."""
    n, size = len(p["labels"]), int(p["size"])
    # low-frequency colour field: bilinear upsampling of a GRID x GRID grid of colours
    pos = (np.arange(size, dtype=np.float32) + 0.5) / size * (_GRID - 1)
    lo = np.minimum(pos.astype(np.int64), _GRID - 2)
    frac = pos - lo
    interp = np.zeros((size, _GRID), np.float32)
    interp[np.arange(size), lo] = 1 - frac
    interp[np.arange(size), lo + 1] = frac
    cells = _SCENES[p["scene"]][:, :, None, None] + p["field_light"] + p["field_colour"]
    img = np.einsum("hk,nckl,wl->nchw", interp, cells, interp, optimize=True)
    # gratings, separably: sin(ax + by + c) = sin(ax + c) cos(by) + cos(ax + c) sin(by)
    x = gx[0, 0]
    texture = np.ones((n, size, size), np.float32)
    for i in range(2):
        o, f = p["grating_orient"][:, i], p["grating_freq"][:, i]
        ax = (2 * np.pi * f * np.cos(o))[:, None] * x + p["grating_phase"][:, i, None]
        by = (2 * np.pi * f * np.sin(o))[:, None] * x
        amp = p["grating_amp"][:, i, None]
        texture += (amp * np.cos(by))[:, :, None] * np.sin(ax)[:, None, :]
        texture += (amp * np.sin(by))[:, :, None] * np.cos(ax)[:, None, :]
    img *= texture[:, None]
    return img


def render(p: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Draw a batch from :func:`sample_params` output.

    Returns ``images`` float32 (N, 3, S, S) in [0, 1]; ``masks`` bool (N, P, S, S), the visible
    pixels of each part in :data:`birds.PARTS` order; ``boxes`` int64 (N, 4) as
    ``(x0, y0, x1, y1)`` with exclusive ends (the bounding box of all visible bird pixels); and
    the layers ``albedo`` (N, 3, S, S), ``shade`` (N, S, S) and per-part ``colours`` (N, P, 3).

    >>> out = render(sample_params(np.array([0, 3]), np.random.default_rng(0), size=32))
    >>> out["images"].shape, out["masks"].shape, out["boxes"].shape
    ((2, 3, 32, 32), (2, 8, 32, 32), (2, 4))
    >>> bool(out["images"].min() >= 0 and out["images"].max() <= 1)
    True
    """
    n, size = len(p["labels"]), int(p["size"])
    coords = np.arange(size, dtype=np.float32) + 0.5 - size / 2
    gx = np.broadcast_to(coords[None, None, :], (n, size, size))
    gy = np.broadcast_to(coords[None, :, None], (n, size, size))

    albedo = _background(p, gx, gy)
    shapes = _bird_shapes(p, gx, gy)
    colours = np.clip(_T_COLOUR[p["labels"]] + p["colour_jitter"], 0.0, 1.0)
    # One id map for everything drawn over the colour field, then one gather:
    # -1 field, 0..L-1 leaves, L branch, L+1+i part i.
    ids = _leaf_ids(p, size)
    ang = p["branch_angle"]
    dist = gx * _col(np.sin(ang)) - gy * _col(np.cos(ang)) - _col(p["branch_offset"])
    ids[(np.abs(dist) <= _col(p["branch_width"])) & _col(p["branch"])] = N_LEAVES
    masks = np.zeros((n, len(birds.PARTS), size, size), dtype=bool)
    cover = np.zeros((n, size, size), dtype=bool)
    for part in reversed(birds.PARTS):  # front to back: what is already covered stays hidden
        i = _P[part]
        masks[:, i] = shapes[part] & ~cover
        cover |= shapes[part]
        ids[masks[:, i]] = N_LEAVES + 1 + i
    scene = _SCENES[p["scene"]]
    leaf_colours = np.where(p["leaf_bird_colour"][:, :, None], _COLOUR_RGB[p["leaf_colour_index"]],
                            scene[:, None] * 0.8 + p["leaf_scene_jitter"])
    palette = np.concatenate([leaf_colours, p["branch_colour"][:, None], colours], 1)  # (N, L+1+P, 3)
    drawn = ids >= 0
    flat = (np.arange(n)[:, None, None] * palette.shape[1] + ids)[drawn]
    albedo = albedo.transpose(0, 2, 3, 1).copy()  # channels last for the gather
    albedo[drawn] = palette.reshape(-1, 3)[flat]
    albedo = albedo.transpose(0, 3, 1, 2)

    ang = p["light_angle"]
    shade = _col(p["brightness"]) * (
        1.0 + _col(p["light_gradient"]) * (gx * _col(np.cos(ang)) + gy * _col(np.sin(ang))) / (size / 2))
    images = np.clip(albedo * shade[:, None] * p["tint"][:, :, None, None] + p["noise"], 0.0, 1.0)

    rows, cols = np.asarray(cover.any(axis=2)), np.asarray(cover.any(axis=1))
    boxes = np.stack([cols.argmax(1), rows.argmax(1),
                      size - cols[:, ::-1].argmax(1), size - rows[:, ::-1].argmax(1)], 1).astype(np.int64)
    return {"images": images.astype(np.float32), "masks": masks, "boxes": boxes,
            "albedo": albedo.astype(np.float32), "shade": shade.astype(np.float32), "colours": colours}
