"""finercam.apps.inputs: models by name, labels, classes by name or id, preprocessing options."""
import argparse
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from finercam.apps import classes, inputs
from finercam.apps.common import UsageError
from finercam.world.models.imagenet import center_crop_transform

NAMES = ("tench", "goldfish", "great white shark", "tiger shark", "jay")


@pytest.mark.parametrize("text, want", [("4", 4), ("jay", 4), ("JAY", 4), (" goldfish ", 1),
                                        ("great", 2), ("tiger", 3), ("tiger shark", 3)])
def test_resolve_class(text, want):
    assert classes.resolve_class(text, NAMES, 5, "--target") == want


@pytest.mark.parametrize("text, words", [("5", "out of range"), ("-1", "out of range"),
                                         ("shark", "several classes"), ("dog", "no class is named")])
def test_resolve_class_errors(text, words):
    with pytest.raises(UsageError, match=words):
        classes.resolve_class(text, NAMES, 5, "--target")


def test_resolve_classes_and_no_names():
    assert classes.resolve_classes("jay, 0,tiger shark", NAMES, 5, "--references") == [4, 0, 3]
    with pytest.raises(UsageError, match="--labels"):
        classes.resolve_class("jay", None, 5, "--references")
    with pytest.raises(UsageError, match="twice"):
        classes.resolve_classes("jay,4", NAMES, 5, "--references")


def test_read_labels(tmp_path):
    p = tmp_path / "l.txt"
    p.write_text("\ufeffa\r\nb b\n\n", encoding="utf-8")
    assert classes.read_labels(p) == ("a", "b b")
    p.write_text("a\n\nb\n")
    with pytest.raises(UsageError, match="empty line"):
        classes.read_labels(p)
    with pytest.raises(UsageError, match="no such file"):
        classes.read_labels(tmp_path / "nope.txt")


def test_class_names_and_count_without_a_model_call():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 6))
    assert classes.class_names_of(net) is None and classes.num_classes_of(net) == 6
    net.config = SimpleNamespace(id2label={0: "a", 2: "c", 1: "b"}, num_labels=3)
    assert classes.class_names_of(net) == ("a", "b", "c") and classes.num_classes_of(net) == 3
    net.config = SimpleNamespace(id2label={0: "a", 5: "gap"})   # ids not 0..n-1: not names
    assert classes.class_names_of(net) is None


def test_probability_warning_only_for_probabilities():
    p = torch.softmax(torch.randn(3, 10), 1).numpy()
    with pytest.warns(UserWarning, match="logits"):
        assert inputs.warn_if_probabilities(p)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not inputs.warn_if_probabilities(np.log(p))
        assert not inputs.warn_if_probabilities(p * 0.5)    # in [0, 1] but rows not summing to 1


def test_preprocessing_options_give_the_written_out_transform():
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8))
    base = inputs.load_model("cnn")
    got = inputs.with_preprocessing(base, size=20, mean=[0.1, 0.2, 0.3], std=[0.5]).transform(photo)
    pixels = np.asarray(photo.resize((20, 20), Image.BILINEAR), np.float64) / 255.0
    want = (pixels - [0.1, 0.2, 0.3]) / 0.5
    assert np.abs(got.permute(1, 2, 0).numpy() - want).max() < 1e-6
    with pytest.raises(UsageError, match="--mean"):
        inputs.with_preprocessing(base, mean=[0.1, 0.2])


def test_center_crop_box_is_where_the_transform_looks():
    w, h = 640, 427
    ramp = np.zeros((h, w, 3), np.float64)
    ramp[..., 0] = np.arange(w)[None] / w
    ramp[..., 1] = np.arange(h)[:, None] / h
    photo = Image.fromarray(np.round(ramp * 255).astype(np.uint8))
    x = center_crop_transform(224, (0.0,) * 3, (1.0,) * 3)(photo)
    left, top, right, bottom = inputs.center_crop_box(224)(w, h)
    # The crop's first and last pixel centres, read off the ramps, in photo pixels.
    assert abs(float(x[0, 0, 0]) * w - left) < 2 and abs(float(x[0, 0, -1]) * w - right) < 4
    assert abs(float(x[1, 0, 0]) * h - top) < 2 and abs(float(x[1, -1, 0]) * h - bottom) < 4


def test_load_model_by_name_and_import_string():
    assert inputs.load_model("vit").class_names[8] == "blue jay"
    net = inputs.load_model("torch.nn:Identity")
    assert isinstance(net.model, nn.Identity) and net.mean == inputs.IMAGENET_MEAN and net.size == 224
    args = argparse.Namespace(model="cnn", layer="block2", labels=None, size=None, mean=None,
                              std=None, transform=None)
    assert inputs.inputs_from_args(args).layer == "block2"
