"""Reference rules, against rankings recomputed in the tests."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import finercam
from finercam.references import pgc_ranks, rank_classes
from models_for_tests import MiniNet, TinyResNet, images, seeded


def test_nearest_logit_ties_to_lower_id():
    y = np.array([[0.0, 2.0, 1.0, 3.0, 1.0]])
    assert rank_classes(y, np.array([3]), "nearest_logit").tolist() == [[1, 2, 4, 0]]
    # class 4 equals the target's logit; 0 and 1 tie at distance 1
    assert rank_classes(y, np.array([2]), "nearest_logit").tolist() == [[4, 0, 1, 3]]


def test_top_predicted_and_ties():
    y = np.array([[0.0, 2.0, 1.0, 3.0, 2.0]])
    assert rank_classes(y, np.array([0]), "top_predicted").tolist() == [[3, 1, 4, 2]]


def test_nearest_logit_is_next_predictions_for_top_target():
    net = seeded(TinyResNet)
    x = images(4)
    exp = finercam.FinerCAM(net, "layer2")(x)
    with torch.no_grad():
        order = torch.argsort(net(x), dim=1, descending=True)
    assert exp.targets.tolist() == order[:, 0].tolist()
    assert exp.references.tolist() == order[:, 1:4].tolist()


def test_nearest_logit_for_a_non_top_target():
    net = seeded(TinyResNet)
    x = images(2)
    exp = finercam.FinerCAM(net, "layer2", num_references=4)(x, targets=[5, 6])
    with torch.no_grad():
        y = net(x).double()
    for n, t in enumerate([5, 6]):
        d = (y[n] - y[n, t]).abs()
        d[t] = float("inf")
        assert exp.references[n].tolist() == torch.argsort(d, stable=True)[:4].tolist()


def test_weight_similarity_is_cosine_of_classifier_rows():
    net = seeded(TinyResNet)
    x = images(3)
    exp = finercam.FinerCAM(net, "layer2", reference_rule="weight_similarity")(x, targets=[0, 4, 9])
    W = net.fc.weight.detach().double()
    S = F.cosine_similarity(W[:, None], W[None], dim=2)
    for n, t in enumerate([0, 4, 9]):
        s = S[t].clone()
        s[t] = -float("inf")
        assert exp.references[n].tolist() == torch.argsort(-s, stable=True)[:3].tolist()


def test_top_predicted_through_fincercam():
    net = seeded(TinyResNet)
    x = images(2)
    exp = finercam.FinerCAM(net, "layer2", reference_rule="top_predicted", num_references=2)(x, targets=[1, 2])
    with torch.no_grad():
        y = net(x)
    for n, t in enumerate([1, 2]):
        order = [c for c in torch.argsort(-y[n], stable=True).tolist() if c != t]
        assert exp.references[n].tolist() == order[:2]


def test_references_capped_at_other_classes():
    net = seeded(MiniNet, num_classes=3)
    # Capped, and said: the warning names the requested and the used count.
    with pytest.warns(UserWarning, match=r"num_references=5, .* using num_references=2$"):
        exp = finercam.FinerCAM(net, "act", num_references=5, candidates=10)(images(2, size=(8, 8)))
    assert exp.references.shape == (2, 2)
    assert exp.candidates.shape == (2, 3)
    # No cap, no warning: C - 1 references exactly, or explicit ones.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        finercam.FinerCAM(net, "act", num_references=2)(images(2, size=(8, 8)))
        finercam.FinerCAM(net, "act", num_references=5)(images(2, size=(8, 8)), [0, 1], [[1, 2], [0, 2]])


def test_explicit_references_are_stored_first():
    net = seeded(TinyResNet)
    exp = finercam.FinerCAM(net, "layer2", candidates=4)(images(2), targets=[0, 1], references=[[9, 8], [7, 6]])
    assert exp.references.tolist() == [[9, 8], [7, 6]]
    assert exp.candidates[:, :3].tolist() == [[0, 9, 8], [1, 7, 6]]
    assert exp.candidates.shape == (2, 5)


def test_pgc_ranks():
    y = np.array([[1.0, 3.0, 3.0, 0.0]])
    main, refs = pgc_ranks(y, np.array([2]), 2)
    assert main.tolist() == [1] and refs.tolist() == [[2, 0]]   # a tie makes class 1 the main class
