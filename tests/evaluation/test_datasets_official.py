"""The readers of the paper's data sets, on trees written in each official format from the bird world.

Every label, box, point and mask is checked against what was written, carried by hand through the
stated geometry (a resize, or a resize and centre crop of a non-square photo), plus split sizes,
a grayscale and a CMYK image, ids out of order (CUB), an invisible part, a missing file and
one-line errors naming the file and line.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from finercam.evaluation import datasets as D
from finercam.world.datasets import birds
from finercam.world.datasets import official as W

SIZE = 48  # rendered side; photos are SIZE x (SIZE + PAD)
OUT = 32   # the reader's output side


def _expected_box(box, region, out=OUT):
    left, top, right, bottom = region
    sx, sy = out / (right - left), out / (bottom - top)
    x0, y0, x1, y1 = box
    clip = lambda v, hi: min(max(v, 0.0), hi)  # noqa: E731
    return [clip((x0 - left) * sx, out), clip((y0 - top) * sy, out), clip((x1 - left) * sx, out), clip((y1 - top) * sy, out)]


VIEWS = {"resize": lambda: D.resize_view(OUT), "crop": lambda: D.center_crop_view(OUT)}


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    out = {}
    for name, fn in (("cub", W.write_cub), ("cars", W.write_cars), ("aircraft", W.write_aircraft),
                     ("birds525", W.write_birds525), ("fishvista", W.write_fishvista)):
        root = tmp_path_factory.mktemp(name)
        out[name] = (root, fn(root, n_train=16, n_test=6, size=SIZE))
    root = tmp_path_factory.mktemp("cars_csv")
    out["cars_csv"] = (root, W.write_cars_csv(root, n_train=16, n_test=6, size=SIZE))
    return out


@pytest.mark.parametrize("view", sorted(VIEWS))
@pytest.mark.parametrize("name", ["cub", "cars", "aircraft", "cars_csv"])
def test_boxes_labels_follow_the_geometry(trees, name, view):
    root, truth = trees[name]
    spec = "cars" if name == "cars_csv" else name
    for split in ("train", "test"):
        ds = D.open_dataset(f"{spec}:{root}:{split}", view=VIEWS[view]())
        assert len(ds) == len(truth[split])
        assert ds.class_names == birds.CLASS_NAMES
        for i, w in enumerate(truth[split]):
            x, label, info = ds[i]
            assert ds.samples[i].path == w.path
            assert label == w.label and tuple(x.shape) == (3, OUT, OUT)
            photo_h = SIZE  # Aircraft's banner is cropped: the photo is SIZE high again
            region = ds.view.crop(SIZE + W.PAD, photo_h)
            np.testing.assert_allclose(info["box"].numpy(), _expected_box(w.box, region), atol=1e-9)


def test_cub_points_visibility_and_ids_out_of_order(trees):
    root, truth = trees["cub"]
    text = (root / "CUB_200_2011" / "images.txt").read_text().split()
    ids = [int(t) for t in text[0::2]]
    assert ids != sorted(ids)  # the files list the ids out of order
    ds = D.CUB(root, "test", view=D.center_crop_view(OUT))
    assert ds.part_names == W.PART_NAMES and len(ds.image_ids) == 6 and list(ds.image_ids) == sorted(ds.image_ids)
    region = ds.view.crop(SIZE + W.PAD, SIZE)
    checked_invisible = 0
    for i, w in enumerate(truth["test"]):
        _, _, info = ds[i]
        sx = OUT / (region[2] - region[0])
        sy = OUT / (region[3] - region[1])
        want = np.stack([(w.points[:, 0] - region[0]) * sx, (w.points[:, 1] - region[1]) * sy], 1)
        inside = (want[:, 0] >= 0) & (want[:, 0] < OUT) & (want[:, 1] >= 0) & (want[:, 1] < OUT)
        np.testing.assert_array_equal(info["parts"]["visible"].numpy(), w.visible & inside)
        vis = w.visible
        np.testing.assert_allclose(info["parts"]["points"].numpy()[vis], want[vis], atol=2e-3 * sx)  # written to 3 decimals
        checked_invisible += int((~w.visible).sum())
    assert not truth["test"][0].visible[W.PART_NAMES.index("eye")] and checked_invisible >= 1


def test_grayscale_and_cmyk_images_read_as_rgb(trees):
    from PIL import Image

    root, truth = trees["cub"]
    modes = [Image.open(w.path).mode for w in truth["test"][:3]]
    assert modes == ["RGB", "L", "CMYK"]
    ds = D.CUB(root, "test", view=D.resize_view(OUT, (0.0,) * 3, (1.0,) * 3))
    gray = ds[1][0]
    assert torch.allclose(gray[0], gray[1]) and torch.allclose(gray[1], gray[2])  # gray stays gray
    want = np.asarray(Image.open(truth["test"][2].path).convert("RGB").resize((OUT, OUT), Image.BILINEAR), np.float32) / 255
    np.testing.assert_allclose(ds[2][0].permute(1, 2, 0).numpy(), want, atol=1e-6)


def test_aircraft_banner_is_cropped(trees):
    from PIL import Image

    root, truth = trees["aircraft"]
    w = truth["test"][3]
    assert Image.open(w.path).size == (SIZE + W.PAD, SIZE + 20)
    ds = D.Aircraft(root, "test", view=D.resize_view(OUT, (0.0,) * 3, (1.0,) * 3))
    photo = Image.open(w.path).convert("RGB").crop((0, 0, SIZE + W.PAD, SIZE)).resize((OUT, OUT), Image.BILINEAR)
    np.testing.assert_allclose(ds[3][0].permute(1, 2, 0).numpy(), np.asarray(photo, np.float32) / 255, atol=1e-6)
    assert ds[0][2]["box"][3].item() == OUT  # the box written into the banner is clipped to the photo
    assert len(D.Aircraft(root, "val")) == 8 and len(D.Aircraft(root, "train")) == 16


def test_birds525_and_fishvista_labels_and_masks(trees):
    root, truth = trees["birds525"]
    ds = D.open_dataset(f"birds525:{root}:test", view=D.resize_view(OUT))
    assert ds.class_names == tuple(sorted(n.upper() for n in birds.CLASS_NAMES))
    assert [ds.class_names[s.label] for s in ds.samples] == [birds.CLASS_NAMES[w.label].upper() for w in truth["test"]]
    assert ds[0][2] == {} and len(D.open_dataset(f"birds525:{root}:val")) == 6
    root, truth = trees["fishvista"]
    for split in ("test", "seg_test"):
        ds = D.open_dataset(f"fishvista:{root}:{split}", view=D.center_crop_view(OUT))
        assert ds.part_names == W.PART_NAMES and len(ds) == 6
        region = ds.view.crop(SIZE + W.PAD, SIZE)
        for i, w in enumerate(truth["test"]):
            _, label, info = ds[i]
            assert ds.class_names[label] == birds.CLASS_NAMES[w.label]
            from PIL import Image
            cut = np.asarray(Image.fromarray(w.labels_image).crop(region).resize((OUT, OUT), Image.NEAREST))
            want = np.stack([cut == p + 1 for p in range(len(W.PART_NAMES))])
            np.testing.assert_array_equal(info["parts"]["masks"].numpy(), want)
    train = D.FishVista(root, "train")
    assert not train[0][2]["parts"]["masks"].any()  # no mask file: empty masks


def test_missing_image_is_one_line_naming_the_list_and_line(tmp_path):
    truth = W.write_cub(tmp_path / "cub", n_train=16, n_test=3, size=SIZE, missing=True)
    with pytest.raises(D.DataFormatError) as e:
        D.CUB(tmp_path / "cub", "test")
    msg = str(e.value)
    lines = (tmp_path / "cub" / "CUB_200_2011" / "images.txt").read_text().splitlines()
    missing_rel = truth["test"][-1].path.split("/images/")[-1]
    line = next(n for n, t in enumerate(lines, 1) if t.endswith(missing_rel))
    assert msg.startswith(f"{tmp_path / 'cub' / 'CUB_200_2011' / 'images.txt'}:{line}: image file ") and "\n" not in msg
    assert len(D.CUB(tmp_path / "cub", "test", missing="skip")) == 2
    W.write_cars(tmp_path / "cars", n_train=16, n_test=3, size=SIZE, missing=True)
    with pytest.raises(D.DataFormatError, match=r"cars_test_annos_withlabels.mat:3: image file"):
        D.Cars(tmp_path / "cars", "test")


def _break(path: Path, line: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[line - 1] = text.format(id=lines[line - 1].split()[0])
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("file, line, text, message", [
    ("bounding_boxes.txt", 2, "{id} 1.0 2.0 x 4.0", r"bounding_boxes.txt:2: 'x' is not a number"),
    ("images.txt", 4, "7", r"images.txt:4: expected 2 fields"),
    ("parts/part_locs.txt", 5, "{id} 1 2.0 3.0 2", r"part_locs.txt:5: visible must be 0 or 1"),
    ("classes.txt", 3, "2 002.Dup", r"classes.txt:3: id 2 listed again \(first on line 2\)"),
])
def test_malformed_cub_lines_name_file_and_line(tmp_path, file, line, text, message):
    W.write_cub(tmp_path, n_train=16, n_test=2, size=SIZE)
    _break(tmp_path / "CUB_200_2011" / file, line, text)
    with pytest.raises(D.DataFormatError, match=message) as e:
        D.CUB(tmp_path, "test")
    assert "\n" not in str(e.value)


def test_missing_annotation_file_and_bad_spec(tmp_path):
    W.write_aircraft(tmp_path, n_train=16, n_test=2, size=SIZE)
    (tmp_path / "data" / "images_box.txt").unlink()
    with pytest.raises(D.DataFormatError, match=r"images_box.txt: missing"):
        D.open_dataset(f"aircraft:{tmp_path}")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        D.parse_spec("cub:/x:dev")
    with pytest.raises(ValueError, match="NAME:ROOT"):
        D.parse_spec("imagenet:/x")


def test_cub_class_attributes(trees):
    root, _ = trees["cub"]
    names, matrix = D.class_attributes(root)
    assert names == W.cub_attribute_names()
    np.testing.assert_allclose(matrix, birds.ATTRIBUTES * 100.0)


def test_a_dataloader_batches_the_items(trees):
    root, truth = trees["cub"]
    ds = D.CUB(root, "test", view=D.resize_view(OUT))
    x, y, info = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert tuple(x.shape) == (4, 3, OUT, OUT) and y.tolist() == [w.label for w in truth["test"][:4]]
    assert tuple(info["box"].shape) == (4, 4) and tuple(info["parts"]["points"].shape) == (4, len(W.PART_NAMES), 2)


def test_runner_reader_maps_labels_by_name_and_keeps_unreadable(trees, tmp_path):
    from finercam.evaluation.data import Unreadable, resolve_data

    root, truth = trees["cub"]
    model_classes = [n.upper().replace(" ", "_") for n in reversed(birds.CLASS_NAMES)]  # loose match
    ds = resolve_data(f"cub:{root}:test", class_names=model_classes)
    assert [s.label for s in ds.samples] == [15 - w.label for w in truth["test"]]
    assert ds.class_names == tuple(model_classes)
    with pytest.raises(ValueError, match="16 of the 16 classes of cub are not among"):
        resolve_data(f"cub:{root}:test", class_names=[f"c{i}" for i in range(16)])
    broken = W.write_cub(tmp_path, n_train=16, n_test=2, size=SIZE)
    Path(broken["test"][1].path).write_bytes(b"not a jpeg")
    item = resolve_data(f"cub:{tmp_path}")[1]
    assert isinstance(item, Unreadable) and item.path == broken["test"][1].path
    with pytest.raises(D.DataFormatError, match="cannot decode the image"):
        D.CUB(tmp_path, "test")[1]


def test_cars_all_in_one_mat(trees, tmp_path):
    from scipy.io import savemat

    root, truth = trees["cars"]
    fields = [(k, "O") for k in ("relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test")]
    rows = [(split, w) for split in ("train", "test") for w in truth[split]]
    annos = np.zeros((1, len(rows)), dtype=fields)
    for i, (split, w) in enumerate(rows):
        x0, y0, x1, y1 = w.box
        rel = str(Path(w.path).relative_to(root))
        annos[0, i] = (np.array([rel]),) + tuple(np.array([[v]], np.uint16) for v in
                                                 (int(x0) + 1, int(y0) + 1, int(x1), int(y1), w.label + 1, split == "test"))
    names = np.empty((1, 16), dtype=object)
    names[0] = list(birds.CLASS_NAMES)
    (tmp_path / "cars_test").symlink_to(root / "cars_test")
    (tmp_path / "cars_train").symlink_to(root / "cars_train")
    savemat(str(tmp_path / "cars_annos.mat"), {"annotations": annos, "class_names": names})
    ds = D.Cars(tmp_path, "test", view=D.resize_view(OUT))
    assert ds.layout == "cars_annos.mat" and len(ds) == len(truth["test"])
    for i, w in enumerate(truth["test"]):
        _, label, info = ds[i]
        assert label == w.label
        np.testing.assert_allclose(info["box"].numpy(), _expected_box(w.box, (0, 0, SIZE + W.PAD, SIZE)), atol=1e-9)


def test_fishvista_part_scores_by_hand(trees):
    from finercam.evaluation.parts import part_scores

    root, truth = trees["fishvista"]
    ds = D.open_dataset(f"fishvista:{root}:seg_test", view=D.resize_view(OUT))
    items = [ds[i] for i in range(3)]
    rng = np.random.default_rng(0)
    maps = rng.random((3, OUT, OUT)).astype(np.float32)
    got = part_scores(maps, [it[2]["parts"] for it in items])
    for i, w in enumerate(truth["test"][:3]):
        from PIL import Image
        labels = np.asarray(Image.fromarray(w.labels_image).resize((OUT, OUT), Image.NEAREST))
        region = labels > 0  # every trait's pixels
        m = maps[i].astype(np.float64)
        assert got["part_energy"][i] == pytest.approx(m[region].sum() / m.sum(), rel=1e-5)
        assert got["part_pointing"][i] == float(region.flat[np.argmax(m)])
