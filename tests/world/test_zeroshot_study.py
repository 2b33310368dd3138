"""The study's measures against direct computations, and the faithfulness examination's plumbing."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from finercam.zeroshot import ZeroShotFinerCAM
from finercam.world.zeroshot.study import correlation, energy_share, examine_faithfulness, top_overlap


def _maps(n=4, h=6, w=5, seed=0):
    return np.random.default_rng(seed).random((n, h, w)).astype(np.float32)


def test_energy_share_is_mass_inside_over_total():
    m = _maps()
    r = np.random.default_rng(1).random(m.shape) < 0.3
    want = [sum(float(m[i, y, x]) for y in range(6) for x in range(5) if r[i, y, x]) / float(m[i].sum())
            for i in range(4)]
    np.testing.assert_allclose(energy_share(m, r), want, rtol=1e-6)
    assert np.isnan(energy_share(np.zeros((1, 2, 2)), np.ones((1, 2, 2), bool))[0])


def test_correlation_is_pearson():
    a, b = _maps(seed=2), _maps(seed=3)
    want = [np.corrcoef(a[i].ravel(), b[i].ravel())[0, 1] for i in range(4)]
    np.testing.assert_allclose(correlation(a, b), want, rtol=1e-6)


def test_top_overlap_is_iou_of_top_sets():
    a, b = _maps(seed=4), _maps(seed=5)
    k = 3  # round(0.1 * 30)
    want = []
    for i in range(4):
        ta = set(np.argsort(-a[i].ravel(), kind="stable")[:k])
        tb = set(np.argsort(-b[i].ravel(), kind="stable")[:k])
        want.append(len(ta & tb) / len(ta | tb))
    np.testing.assert_allclose(top_overlap(a, b, 0.1), want)
    np.testing.assert_allclose(top_overlap(a, a, 0.1), 1.0)


def test_examine_faithfulness_scores_each_attribute_map():
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(8, 5)).eval()
    prompts = ["a bird", "a red wing", "a black tail", "a blue head"]
    zs = ZeroShotFinerCAM(enc, "1", prompts=prompts, text_embeddings=torch.randn(4, 5))
    x = torch.rand(3, 3, 12, 12)
    cls = _maps(3, 12, 12, seed=6)
    attrs = [["a red wing", "a black tail"], ["a blue head"], ["a black tail", "a red wing"]]
    res = examine_faithfulness(cls, zs, x, attrs)
    for i, row in enumerate(attrs):
        for j, p in enumerate(row):
            m = zs.explain(x[i:i + 1], target=p, references=["a bird"]).maps
            np.testing.assert_allclose(res.attribute_maps[i, j], m[0], rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(res.correlation[i, j], correlation(cls[i:i + 1], m)[0], atol=1e-5)
            np.testing.assert_allclose(res.overlap[i, j], top_overlap(cls[i:i + 1], m)[0], atol=0.05)
    assert np.isnan(res.correlation[1, 1])
    np.testing.assert_allclose(res.best_correlation, [max(v for v in row if v == v) for row in res.correlation])
    with pytest.raises(ValueError, match="classifier_maps must be"):
        examine_faithfulness(cls[:2], zs, x, attrs)
    with pytest.raises(ValueError, match="top_fraction"):
        examine_faithfulness(cls, zs, x, attrs, top_fraction=0.0)
