"""One home per helper (issue 12): the engine's shared helpers, each checked against a plain
oracle, and the places that now call them behaving as one."""
import numpy as np
import pytest
import torch
from torch import nn

import finercam
from finercam import kernels, metrics
from finercam._checks import check_fraction, check_images, check_size
from finercam.capture import extract_logits
from finercam.layers import resolve_layers
from finercam.methods import METHOD_LABELS, METHODS
from finercam.references import logit_gaps, pgc_ranks, rank_classes
from finercam.zeroshot.head import encoder_layers


class _Returns(nn.Module):
    """A small CNN whose forward wraps its logits as ``kind`` says."""

    def __init__(self, kind: str):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 5)
        self.kind = kind

    def forward(self, x):
        y = self.fc(torch.relu(self.conv(x)).mean((2, 3)))
        return {"tensor": y, "tuple": (y, None), "dict": {"logits": y}, "nologits": {"scores": y},
                "str": "y", "3d": y[:, None]}[self.kind]


@pytest.mark.parametrize("kind", ["tensor", "tuple", "dict"])
def test_extract_logits_reads_every_container_as_the_plain_tensor(kind):
    x = torch.rand(2, 3, 8, 8)
    want = _Returns("tensor")(x)
    assert torch.equal(extract_logits(_Returns(kind)(x), 2), want)
    # The metrics read the same logits: the unmasked probabilities are their softmax.
    drop = metrics.confidence_drop(_Returns(kind), x, torch.rand(2, 8, 8), targets=[0, 1], fraction=1.0)
    p = torch.softmax(want.detach().double(), 1).numpy()
    masked = torch.softmax(_Returns("tensor")(torch.zeros_like(x)).detach().double(), 1).numpy()
    np.testing.assert_allclose(drop, p[[0, 1], [0, 1]] - masked[[0, 1], [0, 1]], atol=1e-6)


@pytest.mark.parametrize("kind,error", [("nologits", TypeError), ("str", TypeError), ("3d", ValueError)])
def test_an_output_without_logits_is_one_error_in_finercam_and_the_metrics(kind, error):
    model, x = _Returns(kind), torch.rand(2, 3, 8, 8)
    with pytest.raises(error, match="model output"):
        finercam.FinerCAM(model, "conv")(x)
    with pytest.raises(error, match="model output"):
        metrics.relative_drop(model, x, torch.rand(2, 8, 8), targets=[0, 1], compare_to=[1, 0])


def test_as_numpy_keeps_numpy_dtypes_and_widens_bfloat16():
    t64 = torch.tensor([[1.0, 2.5]], dtype=torch.float64, requires_grad=True)
    a = kernels.as_numpy(t64)
    assert a.dtype == np.float64 and a.tolist() == [[1.0, 2.5]]
    b = kernels.as_numpy(torch.tensor([1.0, 3.015625], dtype=torch.bfloat16))
    assert b.dtype == np.float32 and b.tolist() == [1.0, 3.015625]
    assert kernels.as_numpy(torch.tensor([3, 4])).dtype == np.int64
    rows = [[1, 2]]
    assert kernels.as_numpy(rows) is rows


def test_nearest_logit_ranking_is_one_rule():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=(50, 6)).astype(np.float64)  # many ties
    t = rng.integers(0, 6, size=50)
    # Oracle: per row, the class j != c with the smallest |y_j - y_c|, the lowest id among ties.
    want = [min((abs(y[n, j] - y[n, t[n]]), j) for j in range(6) if j != t[n])[1] for n in range(50)]
    assert metrics.nearest_logit_class(y, t).tolist() == want
    assert rank_classes(y, t, "nearest_logit")[:, 0].tolist() == want
    np.testing.assert_array_equal(logit_gaps(y, t), np.abs(y - y[np.arange(50), t][:, None]))
    # pgc keeps the target in the ranking: its main class is the lowest id at gap 0.
    main, _ = pgc_ranks(y, t, 2)
    assert main.tolist() == [min(j for j in range(6) if y[n, j] == y[n, t[n]]) for n in range(50)]


def test_the_apps_read_the_engine_method_list():
    from finercam.apps import demo, explain
    from finercam.evaluation import scoring

    assert explain.METHODS is METHODS
    # the runner's rows are named by the engine's labels
    rows = scoring.settings(list(METHOD_LABELS), finer=False)
    assert [r.name for r in rows] == list(METHOD_LABELS.values())
    assert set(METHOD_LABELS) == set(METHODS)
    assert all(METHOD_LABELS[key] == label for key, label in demo.METHODS)


def test_zero_shot_layers_resolve_as_the_engine_does():
    enc = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Sequential(nn.Conv2d(4, 4, 1)))
    names = ["2.0", enc[1]]
    assert encoder_layers(enc, names) == [m for _, m in resolve_layers(enc, names)] == [enc[2][0], enc[1]]
    with pytest.raises(ValueError, match="not a submodule of the image encoder; closest names"):
        encoder_layers(enc, "2.1")
    with pytest.raises(ValueError, match="empty list"):
        encoder_layers(enc, [])


def test_shared_validators_name_the_argument():
    assert check_fraction(1) == 1.0 and check_size(np.int64(3)) == (3, 3)
    for bad, error in ((0.0, ValueError), (1.5, ValueError), (True, TypeError), ("0.1", TypeError)):
        with pytest.raises(error, match="fractions"):
            check_fraction(bad, "fractions")
    with pytest.raises(TypeError, match="size"):
        check_size((2.0, 3))
    for bad, error in ((np.zeros((1, 3, 2, 2)), TypeError), (torch.zeros(1, 3, 2, 2, dtype=torch.int32), TypeError),
                       (torch.zeros(0, 3, 2, 2), ValueError), (torch.zeros(3, 2, 2), ValueError)):
        with pytest.raises(error, match="images"):
            check_images(bad)
