"""The bird world: determinism, masks against the rendered image, attributes, discriminative regions."""
import hashlib

import numpy as np
import pytest
import torch

from finercam.world import datasets
from finercam.world.datasets import birds, render

N = 48  # images per fixture batch: three of each class


@pytest.fixture(scope="module")
def batch():
    return datasets.generate(N, seed=3, split="test")


@pytest.fixture(scope="module")
def layers():
    """The renderer's intermediate layers for the same images as ``batch``."""
    rng = np.random.default_rng(np.random.SeedSequence([3, datasets.SPLITS.index("test"), 0]))
    labels = np.arange(datasets.CHUNK) % birds.NUM_CLASSES
    params = render.sample_params(labels, rng)
    return params, render.render(params)


def _digest(b: datasets.Batch) -> str:
    h = hashlib.sha256()
    for a in (b.images, b.labels, b.boxes, b.parts):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def test_same_seed_same_bytes_and_different_seed_different_images(batch):
    again = datasets.generate(N, seed=3, split="test")
    assert _digest(again) == _digest(batch)
    other_seed = datasets.generate(N, seed=4, split="test")
    other_split = datasets.generate(N, seed=3, split="train")
    assert np.abs(other_seed.images - batch.images).mean() > 0.05
    assert np.abs(other_split.images - batch.images).mean() > 0.05


def test_an_image_depends_only_on_its_index(batch):
    # a window that starts mid-chunk and crosses a chunk boundary
    window = datasets.generate(30, seed=3, split="test", start=40)
    full = datasets.generate(70, seed=3, split="test")
    np.testing.assert_array_equal(window.images, full.images[40:70])
    np.testing.assert_array_equal(window.parts, full.parts[40:70])
    np.testing.assert_array_equal(full.images[:N], batch.images)
    ds = datasets.SpotTheDifference(split="test", n=100, seed=3)
    for i in (69, 2, 41):  # any order
        image, label, info = ds[i]
        np.testing.assert_array_equal(image.numpy(), full.images[i])
        assert label == full.labels[i] == i % 16
        np.testing.assert_array_equal(info["parts"].numpy(), full.parts[i])
        np.testing.assert_array_equal(info["box"].numpy(), full.boxes[i])


def test_uint8_images_are_the_rounded_float_images(batch):
    as_bytes = datasets.generate(N, seed=3, split="test", dtype=np.uint8)
    np.testing.assert_array_equal(as_bytes.images, np.rint(batch.images * 255).astype(np.uint8))


def test_part_pixels_take_the_part_colour(batch, layers):
    params, out = layers
    np.testing.assert_array_equal(out["images"][:N], batch.images)
    np.testing.assert_array_equal(out["masks"][:N], batch.parts)
    albedo, colours = out["albedo"], out["colours"]
    # the expected colour of every part: the class colour from the attribute table, plus jitter
    table = np.array([[birds.COLOURS[birds.CLASS_PARTS[c][p][0]] for p in birds.PARTS]
                      for c in params["labels"]], dtype=np.float32)
    np.testing.assert_allclose(colours, np.clip(table + params["colour_jitter"], 0, 1), atol=1e-6)
    seen = 0
    for n in range(N):
        for i, part in enumerate(birds.PARTS):
            m = batch.parts[n, i]
            if m.any():
                seen += 1
                np.testing.assert_array_equal(albedo[n][:, m], np.repeat(colours[n, i][:, None], m.sum(), 1))
    assert seen > 6 * N  # most parts are visible in most images
    # and the image is that albedo under the lighting: divide the lighting out, compare per part
    lit = albedo * out["shade"][:, None] * params["tint"][:, :, None, None]
    inside = (lit > 0.05) & (lit < 0.95)  # away from clipping
    err = (out["images"] - lit)[inside]
    assert abs(err.mean()) < 0.01 and 0.02 < err.std() < 0.04  # the sensor noise, sigma 0.03


def test_masks_are_disjoint_inside_the_box_and_cover_the_bird(batch):
    count = batch.parts.sum(axis=1)
    assert count.max() == 1  # a pixel shows at most one part
    bird = count.astype(bool)
    for n in range(N):
        x0, y0, x1, y1 = batch.boxes[n]
        ys, xs = np.nonzero(bird[n])
        assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    # a large bird: the body is always there, and head, tail and beak almost always
    visible = batch.parts.any(axis=(2, 3)).mean(axis=0)
    assert visible[birds.PARTS.index("body")] == 1.0
    for part in ("head", "tail", "beak", "breast"):
        assert visible[birds.PARTS.index(part)] > 0.9


def test_attribute_matrix_matches_the_class_table():
    a = birds.ATTRIBUTES
    assert a.shape == (16, len(birds.ATTRIBUTE_NAMES))
    assert (a.sum(axis=1) == 2 * len(birds.PARTS)).all()  # one colour and one shape per part
    assert len({tuple(row) for row in a}) == 16  # every class distinct
    for c in range(16):
        for part, (colour, shape) in birds.CLASS_PARTS[c].items():
            assert a[c, birds.ATTRIBUTE_NAMES.index(f"{part}:colour:{colour}")] == 1
            assert a[c, birds.ATTRIBUTE_NAMES.index(f"{part}:shape:{shape}")] == 1


# The design: per family, S1 and S2 change one part of S0, S3 two parts, all different.
DESIGN = {
    0: (("wing",), ("beak",), ("crest", "head")),
    4: (("breast",), ("tail",), ("crest", "head")),
    8: (("crest",), ("wing",), ("tail", "breast")),
    12: (("beak",), ("breast",), ("wing", "head")),
}


@pytest.mark.parametrize("base", sorted(DESIGN))
def test_siblings_differ_exactly_in_the_designed_parts(base):
    changed = [set(p) for p in DESIGN[base]]
    family = [base, base + 1, base + 2, base + 3]
    assert {birds.CLASS_FAMILY[c] for c in family} == {base // 4}
    assert set(birds.siblings(base)) == set(family[1:])
    for k in range(3):
        assert set(birds.differing_parts(base, base + 1 + k)) == changed[k]
    for i in range(1, 4):
        for j in range(i + 1, 4):
            expected = changed[i - 1] | changed[j - 1]
            assert set(birds.differing_parts(base + i, base + j)) == expected
            assert birds.differing_parts(base + j, base + i) == birds.differing_parts(base + i, base + j)
    # every pair of a family is told apart by a different set of parts
    pairs = [frozenset(birds.differing_parts(a, b)) for a in family for b in family if a < b]
    assert len(set(pairs)) == 6
    # the attribute vectors differ exactly in the columns of those parts
    for b in family[1:]:
        diff = birds.ATTRIBUTES[base] != birds.ATTRIBUTES[b]
        parts = {birds.ATTRIBUTE_NAMES[i].split(":")[0] for i in np.nonzero(diff)[0]}
        assert parts == set(birds.differing_parts(base, b))


def test_other_families_differ_in_more_parts_than_siblings():
    for c in range(16):
        sib = max(len(birds.differing_parts(c, d)) for d in birds.siblings(c))
        other = min(len(birds.differing_parts(c, d)) for d in range(16) if birds.CLASS_FAMILY[d] != birds.CLASS_FAMILY[c])
        assert sib <= 3 and other >= 5
        # attribute (Hamming) nearest classes are the siblings
        ham = (birds.ATTRIBUTES[c] != birds.ATTRIBUTES).sum(axis=1)
        ham[c] = 10 ** 6
        assert set(np.argsort(ham, kind="stable")[:3]) == set(birds.siblings(c))


def test_discriminative_region_is_the_union_of_differing_part_masks(batch):
    rng = np.random.default_rng(0)
    for n in range(16):
        c = int(batch.labels[n])
        refs = [int(d) for d in rng.choice([d for d in range(16) if d != c], size=3, replace=False)]
        for d in (refs[0], refs):
            parts = birds.differing_parts(c, d)
            expected = np.zeros(batch.parts.shape[2:], bool)
            for p in parts:
                expected |= batch.parts[n, birds.PARTS.index(p)]
            got = datasets.discriminative_mask(batch.parts[n], c, d)
            np.testing.assert_array_equal(got, expected)
            got_t = datasets.discriminative_mask(torch.from_numpy(batch.parts[n]), c, d)
            assert got_t.dtype == torch.bool
            np.testing.assert_array_equal(got_t.numpy(), expected)
    # batched, and the aggregated region contains each single-reference region
    single = datasets.discriminative_mask(batch.parts[:16], 5, 4)
    union = datasets.discriminative_mask(batch.parts[:16], 5, [4, 6, 7])
    assert single.shape == (16, 96, 96) and (union | single == union).all() and union.sum() > single.sum()


def test_caption_names_every_attribute():
    assert birds.caption(8) == ("a long bird with a blue body, a white breast, a large blue head, a tall blue "
                                "crest, a black eye, a conical black beak, a rounded blue wing and a long blue tail")
    for c in range(16):
        text = birds.caption(c)
        for part, (colour, _) in birds.CLASS_PARTS[c].items():
            assert f"{colour} {part}" in text
    assert birds.caption(1, parts=["wing"]) == "a plump bird with a rounded black wing"


def test_bad_arguments_raise_with_the_argument_name():
    with pytest.raises(ValueError, match="split"):
        datasets.generate(4, split="dev")
    with pytest.raises(TypeError, match="seed"):
        datasets.generate(4, seed=1.5)
    with pytest.raises(ValueError, match="n must"):
        datasets.generate(-1)
    with pytest.raises(ValueError, match="c must"):
        birds.differing_parts(16, 0)
    with pytest.raises(TypeError, match="d must"):
        birds.differing_parts(0, [1.0])
    with pytest.raises(ValueError, match="sample_parts"):
        datasets.discriminative_mask(np.zeros((3, 8, 8), bool), 0, 1)
    with pytest.raises(TypeError, match="sample_parts"):
        datasets.discriminative_mask([[0]], 0, 1)
    with pytest.raises(IndexError):
        datasets.SpotTheDifference(n=4)[4]


def test_dataloader_batches_images_labels_and_masks():
    ds = datasets.SpotTheDifference(split="val", n=20, seed=1)
    images, labels, info = next(iter(torch.utils.data.DataLoader(ds, batch_size=8)))
    assert images.dtype == torch.float32 and labels.tolist() == list(range(8))
    assert info["parts"].shape == (8, 8, 96, 96) and info["box"].shape == (8, 4)
    b = ds.batch(0, 8)
    np.testing.assert_array_equal(images.numpy(), b.images)
