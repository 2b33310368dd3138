"""Insertion AUC (finercam.metrics.insertion_auc) against a plain-torch oracle: the blurred image
(a depthwise convolution with a replicate-padded Gaussian), the map's top pixels put back by a
stable sort and a scatter, a forward, the trapezoid."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from finercam import metrics


def tiny_cnn(seed=0, classes=5):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(6, 8, 3, padding=1),
        torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(32, classes)).eval()


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(2)
    images = torch.randn(4, 3, 10, 12, generator=g)
    maps = torch.rand(4, 10, 12, generator=g)
    maps[1, 4:, :5] = 0.25  # ties
    return tiny_cnn(), images, maps


def oracle_blur(images, sigma=metrics.BLUR_SIGMA):
    r = math.ceil(3 * sigma)
    g = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float64) / sigma) ** 2)
    g = (g / g.sum()).float()
    c = images.shape[1]
    x = F.pad(images, (r, r, r, r), mode="replicate")
    x = F.conv2d(x, g.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def oracle_inserted(images, start, maps, k):
    n, _, h, w = images.shape
    order = torch.argsort(maps.reshape(n, -1), dim=1, descending=True, stable=True)
    shown = torch.zeros(n, h * w)
    shown.scatter_(1, order[:, :k], 1.0)
    shown = shown.reshape(n, 1, h, w)
    return images * shown + start * (1 - shown)


@pytest.mark.parametrize("baseline", ["blur", 0.0, "mean"])
def test_insertion_curve_and_auc_against_the_oracle(batch, baseline):
    model, images, maps = batch
    t = torch.tensor([0, 1, 2, 3])
    steps = 6
    r = metrics.insertion_auc(model, images, maps, t, steps=steps, baseline=baseline)
    start = {"blur": oracle_blur(images), 0.0: torch.zeros_like(images),
             "mean": images.mean(dim=(2, 3), keepdim=True).expand_as(images)}[baseline]
    curve = []
    for k in range(steps + 1):
        x = oracle_inserted(images, start, maps, math.ceil(k * 120 / steps))
        with torch.no_grad():
            curve.append(torch.softmax(model(x).double(), 1)[torch.arange(4), t])
    curve = torch.stack(curve, 1).numpy()
    np.testing.assert_allclose(r.curve, curve, atol=2e-6)
    np.testing.assert_allclose(r.auc, ((curve[:, 1:] + curve[:, :-1]) / 2).sum(1) / steps, atol=2e-6)
    assert r.counts.tolist() == [math.ceil(k * 120 / steps) for k in range(steps + 1)]
    np.testing.assert_allclose(r.fractions, np.arange(steps + 1) / steps)


def test_insertion_ends_at_the_image_and_complements_deletion(batch, monkeypatch):
    model, images, maps = batch
    ins = metrics.insertion_auc(model, images, maps, steps=4)
    with torch.no_grad():
        p = torch.softmax(model(images).double(), 1).numpy()
    np.testing.assert_allclose(ins.curve[:, -1], p[np.arange(4), p.argmax(1)], atol=1e-6)
    # insertion's first step is the fully blurred image: deletion's last with the blur baseline
    dele = metrics.deletion_auc(model, images, maps, steps=4, baseline="blur")
    np.testing.assert_allclose(ins.curve[:, 0], dele.curve[:, -1], atol=1e-6)
    calls = []

    def counting(x):
        calls.append(x.shape[0])
        return model(x)

    monkeypatch.setattr(metrics, "BUFFER_BYTES", 1)
    small = metrics.insertion_auc(counting, images, maps, steps=4, batch_size=3)
    np.testing.assert_allclose(small.curve, ins.curve, atol=1e-6)
    assert sum(calls) == 4 + 5 * 4  # one unmasked forward, then all five steps (step 0 included)


def test_insertion_bad_input(batch):
    model, images, maps = batch
    with pytest.raises(ValueError, match="steps"):
        metrics.insertion_auc(model, images, maps, steps=0)
    with pytest.raises(ValueError, match="baseline"):
        metrics.insertion_auc(model, images, maps, baseline="noise")
    with pytest.raises(ValueError, match="maps"):
        metrics.insertion_auc(model, images, maps[:, :5])
    with pytest.raises(ValueError, match="targets"):
        metrics.insertion_auc(model, images, maps, targets=[9, 0, 0, 0])
