"""Bad input gets a TypeError or ValueError that names the argument."""
import math

import numpy as np
import pytest
import torch
from torch import nn

import finercam
from models_for_tests import TinyResNet, TinyViT, images, seeded


@pytest.fixture(scope="module")
def net():
    return seeded(TinyResNet)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"method": "gradcamx"}, ValueError, "method"),
    ({"reference_rule": "closest"}, ValueError, "reference_rule"),
    ({"aggregate": "median"}, ValueError, "aggregate"),
    ({"objective": "other"}, ValueError, "objective"),
    ({"gamma": float("nan")}, ValueError, "gamma"),
    ({"gamma": math.inf}, ValueError, "gamma"),
    ({"gamma": -0.1}, ValueError, "gamma"),
    ({"gamma": True}, TypeError, "gamma"),
    ({"gamma": "0.6"}, TypeError, "gamma"),
    ({"num_references": 0}, ValueError, "num_references"),
    ({"num_references": 2.0}, TypeError, "num_references"),
    ({"candidates": 0}, ValueError, "candidates"),
    ({"reverse": 1}, TypeError, "reverse"),
    ({"reshape": 3}, TypeError, "reshape"),
    ({"score_budget_mb": 0}, ValueError, "score_budget_mb"),
    ({"objective": "pgc", "method": "scorecam"}, ValueError, "pgc"),
])
def test_bad_constructor_arguments(net, kwargs, error, match):
    with pytest.raises(error, match=match):
        finercam.FinerCAM(net, "layer2", **kwargs)


@pytest.mark.parametrize("layer,error", [("layer9", ValueError), (nn.Conv2d(1, 1, 1), ValueError),
                                         (3, TypeError), ([], ValueError), (["layer2", "layer2"], ValueError)])
def test_bad_layers(net, layer, error):
    with pytest.raises(error, match="target_layer"):
        finercam.FinerCAM(net, layer)


def test_close_name_is_suggested(net):
    with pytest.raises(ValueError, match="layer2"):
        finercam.FinerCAM(net, "layr2")


@pytest.mark.parametrize("x,error,match", [
    (np.zeros((1, 3, 32, 32), np.float32), TypeError, "images"),
    (torch.zeros(3, 32, 32), ValueError, "images"),
    (torch.zeros(1, 3, 32, 32, dtype=torch.int64), TypeError, "images"),
    (torch.zeros(0, 3, 32, 32), ValueError, "images"),
])
def test_bad_images(net, x, error, match):
    with pytest.raises(error, match=match):
        finercam.FinerCAM(net, "layer2")(x)


@pytest.mark.parametrize("targets,error", [([1], ValueError), ([1, 2, 3], ValueError), (10, ValueError),
                                           (-1, ValueError), ([0.5, 1.0], TypeError), (True, TypeError),
                                           ("1", TypeError)])
def test_bad_targets(net, targets, error):
    with pytest.raises(error, match="targets"):
        finercam.FinerCAM(net, "layer2")(images(2), targets)


@pytest.mark.parametrize("refs,error", [
    ([[1, 2]], ValueError),                 # one row for two samples
    ([[1, 2], [3]], ValueError),            # unequal counts
    ([[1, 1], [2, 3]], ValueError),         # duplicates
    ([[0, 2], [3, 4]], ValueError),         # holds the target 0
    ([[1, 10], [2, 3]], ValueError),        # out of range
    ([[1, -1], [2, 3]], ValueError),
    ([[1.0, 2.0], [2, 3]], TypeError),
    ([1, 2], TypeError),                    # not one list per sample
    (5, TypeError),
])
def test_bad_references(net, refs, error):
    with pytest.raises(error, match="references"):
        finercam.FinerCAM(net, "layer2")(images(2), [0, 5], refs)


def test_targets_as_tensor_and_int(net):
    x = images(2)
    a = finercam.FinerCAM(net, "layer2")(x, torch.tensor([4, 4]))
    b = finercam.FinerCAM(net, "layer2")(x, 4)
    np.testing.assert_array_equal(a.maps, b.maps)
    assert b.targets.tolist() == [4, 4]


def test_layer_not_reached(net):
    net2 = seeded(TinyResNet)
    net2.unused = nn.Conv2d(16, 16, 1)
    with pytest.raises(ValueError, match="not reached"):
        finercam.FinerCAM(net2, "unused")(images(1))


def test_layer_output_not_3d_or_4d(net):
    with pytest.raises(ValueError, match="2-D"):
        finercam.FinerCAM(net, "fc")(images(1))


def test_layer_called_twice():
    conv = nn.Conv2d(3, 3, 1)

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = conv
            self.fc = nn.Linear(3, 4)

        def forward(self, x):
            return self.fc(self.conv(self.conv(x)).mean((2, 3)))

    with pytest.raises(ValueError, match="more than once"):
        finercam.FinerCAM(Twice(), "conv")(images(1))


@pytest.mark.parametrize("out", ["3d", "dict", "str", "one_class"])
def test_model_output_not_logits(out):
    net = seeded(TinyResNet)

    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            y = self.net(x)
            return {"3d": y[:, None], "dict": {"scores": y}, "str": "y", "one_class": y[:, :1]}[out]

    # No logits tensor at all is a TypeError; a tensor of the wrong shape a ValueError.
    error = TypeError if out in ("dict", "str") else ValueError
    with pytest.raises(error, match="logit"):
        finercam.FinerCAM(Bad(), "net.layer2")(images(2))


def test_nan_activations(net):
    x = images(1)
    x[0, :, 5, 5] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        finercam.FinerCAM(net, "layer2")(x)


def test_cam_without_matching_classifier():
    with pytest.raises(ValueError, match="classifier"):   # layer1 has 8 channels, fc takes 16
        finercam.FinerCAM(seeded(TinyResNet), "layer1", method="cam")(images(1))
    vit = seeded(TinyViT)
    with pytest.raises(TypeError, match="classifier"):
        finercam.FinerCAM(vit, "blocks.0", method="cam", classifier="norm")


def test_recombine_bad_arguments(net):
    exp = finercam.FinerCAM(net, "layer2")(images(2))
    with pytest.raises(ValueError, match="gamma"):
        exp.recombine(gamma=-1)
    with pytest.raises(TypeError, match="gamma"):
        exp.recombine(gamma=False)
    with pytest.raises(ValueError, match="aggregate"):
        exp.recombine(aggregate="sum")
    with pytest.raises(TypeError, match="reverse"):
        exp.recombine(reverse="yes")
    with pytest.raises(ValueError, match="references"):
        exp.recombine(references=[[int(exp.targets[0])], [int(exp.references[1, 0])]])
