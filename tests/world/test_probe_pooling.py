"""``finercam probe``'s part-keeping poolings, ``avgmax`` and ``grid2``: the pooled features and
the probe's logits against a by-hand NumPy pooling of the backbone's feature map, the gradient at
the target layer (what Grad-CAM and Finer-CAM read) against its closed form, and the saved file
loaded back through ``--model probe:FILE`` with the same logits."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from finercam import FinerCAM
from finercam.apps import inputs
from finercam.apps.probe_command import add_arguments
from finercam.probe import POOLINGS, ProbeModel, pool_features, save_probe
from finercam.world import models


def _cells(n: int) -> list:
    # adaptive_avg_pool2d's 2 cells along a side of n: [floor(i n / 2), ceil((i + 1) n / 2))
    return [(i * n // 2, -(-(i + 1) * n // 2)) for i in range(2)]


def _grid2_by_hand(a: np.ndarray) -> np.ndarray:
    n, c, h, w = a.shape
    out = np.zeros((n, c, 2, 2))
    for i, (r0, r1) in enumerate(_cells(h)):
        for j, (c0, c1) in enumerate(_cells(w)):
            out[:, :, i, j] = a[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
    return out.reshape(n, c * 4)  # channel-major: channel k's four cells at 4k .. 4k + 3


def _avgmax_by_hand(a: np.ndarray) -> np.ndarray:
    flat = a.reshape(a.shape[0], a.shape[1], -1)
    return np.concatenate([flat.mean(axis=2), flat.max(axis=2)], axis=1)


@pytest.mark.parametrize("shape", [(2, 3, 7, 7), (1, 4, 6, 5), (2, 2, 12, 12)])
def test_pooled_features_by_hand(shape):
    a = np.random.default_rng(0).normal(size=shape)
    t = torch.from_numpy(a)
    np.testing.assert_allclose(pool_features(t, "grid2").numpy(), _grid2_by_hand(a), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(pool_features(t, "avgmax").numpy(), _avgmax_by_hand(a), rtol=1e-12, atol=1e-12)
    # a 7-wide side: cells [0, 4) and [3, 7), the middle row in both
    assert _cells(7) == [(0, 4), (3, 7)]


def test_avgmax_on_tokens_and_grid2_needs_a_map():
    seq = torch.tensor([[[1.0, -2.0], [3.0, 0.0], [-1.0, 5.0]]])
    assert pool_features(seq, "avgmax").tolist() == [[1.0, 1.0, 3.0, 5.0]]
    with pytest.raises(ValueError, match="grid2"):
        pool_features(seq, "grid2")
    assert {"avgmax", "grid2"} <= set(POOLINGS)


def _backbone() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.Conv2d(5, 6, 3, stride=2), nn.Tanh()).eval()


@pytest.mark.parametrize("pooling,width", [("grid2", 24), ("avgmax", 12)])
def test_probe_logits_and_layer_gradient_by_hand(pooling, width):
    backbone = _backbone()
    torch.manual_seed(1)
    head = nn.Linear(width, 3)
    model = ProbeModel(backbone, "3", pooling, head)
    x = torch.randn(2, 3, 15, 15, dtype=torch.float32).requires_grad_(True)  # the backbone is frozen
    with torch.no_grad():
        fmap = backbone(x).double().numpy()  # (2, 6, 7, 7): the target layer's output
    w, b = head.weight.detach().double().numpy(), head.bias.detach().double().numpy()
    by_hand = (_grid2_by_hand(fmap) if pooling == "grid2" else _avgmax_by_hand(fmap)) @ w.T + b
    with torch.no_grad():
        np.testing.assert_allclose(model(x).double().numpy(), by_hand, rtol=1e-5, atol=1e-5)

    # the head's input is a differentiable function of the target layer: d logit_c / d A by autograd
    # through the probe (a hook on its target layer, as an explainer takes it) against the closed form
    taken = {}

    def keep(m, a, out):
        out.retain_grad()
        taken["a"] = out

    h = model.get_submodule("backbone.3").register_forward_hook(keep)
    try:
        model(x)[0, 2].backward()
    finally:
        h.remove()
    grad = taken["a"].grad[0].double().numpy()
    want = np.zeros_like(fmap[0])
    c, hh, ww = fmap.shape[1:]
    if pooling == "grid2":
        for k in range(c):
            for i, (r0, r1) in enumerate(_cells(hh)):
                for j, (c0, c1) in enumerate(_cells(ww)):
                    want[k, r0:r1, c0:c1] += w[2, 4 * k + 2 * i + j] / ((r1 - r0) * (c1 - c0))
    else:
        for k in range(c):
            want[k] += w[2, k] / (hh * ww)
            r, q = np.unravel_index(np.argmax(fmap[0, k]), (hh, ww))
            want[k, r, q] += w[2, c + k]
    np.testing.assert_allclose(grad, want, rtol=1e-5, atol=1e-6)


def _channels(cnn: nn.Module) -> int:
    taken: dict = {}
    h = cnn.get_submodule("block3").register_forward_hook(lambda m, a, o: taken.setdefault("f", o))
    with torch.no_grad():
        cnn(torch.zeros(1, 3, 96, 96))
    h.remove()
    return int(taken["f"].shape[1])


@pytest.mark.parametrize("pooling", ["grid2", "avgmax"])
def test_saved_probe_loads_through_probe_file_with_the_same_logits(pooling, tmp_path):
    cnn = models.load("cnn")
    torch.manual_seed(2)
    channels = _channels(cnn)
    width = channels * (4 if pooling == "grid2" else 2)
    model = ProbeModel(cnn, "block3", pooling, nn.Linear(width, 16), class_names=[f"c{i}" for i in range(16)]).eval()
    pre = {"mode": "resize", "size": 96, "mean": [0.0] * 3, "std": [1.0] * 3}
    path = save_probe(tmp_path / "p.pt", model, backbone="cnn", preprocessing=pre, record={"accuracy": 0.5})
    found = inputs.load_model(f"probe:{path}")
    assert isinstance(found.model, ProbeModel) and found.model.pooling == pooling
    assert found.layer == "backbone.block3" and found.class_names == tuple(f"c{i}" for i in range(16))
    x = torch.rand(3, 3, 96, 96)
    with torch.no_grad():
        taken: dict = {}
        fresh = models.load("cnn")
        h = fresh.get_submodule("block3").register_forward_hook(lambda m, a, o: taken.setdefault("f", o))
        fresh(x)
        h.remove()
        f = taken["f"].double().numpy()
        pooled = _grid2_by_hand(f) if pooling == "grid2" else _avgmax_by_hand(f)
        want = pooled @ model.head.weight.double().numpy().T + model.head.bias.double().numpy()
        np.testing.assert_allclose(found.model(x).double().numpy(), want, rtol=1e-5, atol=1e-5)
    exp = FinerCAM(found.model, found.layer)(x[:2], targets=[0, 1])
    assert exp.maps.shape == (2, 96, 96) and np.isfinite(exp.maps).all() and exp.maps.max() > 0


def test_cli_accepts_the_new_poolings():
    import argparse

    p = argparse.ArgumentParser()
    add_arguments(p)
    for pooling in ("avgmax", "grid2"):
        assert p.parse_args(["--data", "cub:/d", "--pooling", pooling]).pooling == pooling
    assert p.parse_args(["--data", "cub:/d", "--resize"]).resize
    with pytest.raises(SystemExit):  # a crop and no crop at once
        p.parse_args(["--data", "cub:/d", "--resize", "--center-crop"])


@pytest.mark.parametrize("layer,pooling", [("_bn1", "grid2"), ("_blocks.15", "avgmax"), ("_bn1", "auto")])
def test_world_probe_reads_a_probe_file_with_the_same_logits(layer, pooling, tmp_path):
    """A `finercam probe --backbone imagenet` file as the bird world's probe: the world's explicit
    forward (its own normalisation, blocks and pooling) gives the logits of `finercam probe`'s own
    module (the backbone's forward, the layer taken by a hook), and its conversion keeps the head."""
    from finercam.world.models import probe as P
    from finercam.world.models.imagenet import load_imagenet

    net = load_imagenet().model.eval()
    width = {"_bn1": 1280, "_blocks.15": 320}[layer] * {"grid2": 4, "avgmax": 2}.get(pooling, 1)
    torch.manual_seed(3)
    cli = ProbeModel(net, layer, pooling, nn.Linear(width, 16), class_names=[f"c{i}" for i in range(16)]).eval()
    pre = {"mode": "resize", "size": 96, "mean": [0.5] * 3, "std": [0.5] * 3}
    path = save_probe(tmp_path / "p.pt", cli, backbone="imagenet", preprocessing=pre, record={"accuracy": 0.75})
    world = P.load_probe(path)
    assert world.pooling == ("avg" if pooling == "auto" else pooling) and world.feature_layers == (layer,)
    assert not world.activation and world.input_size == 96
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        np.testing.assert_allclose(world(x).numpy(), cli((x - 0.5) / 0.5).numpy(), rtol=1e-4, atol=1e-4)
    converted = P.from_probe_file(path)
    torch.testing.assert_close(converted["state_dict"]["weight"], cli.head.weight.detach())
    assert converted["accuracy"] == 0.75 and converted["config"]["activation"] is False
    # written as the world's checkpoint, it loads the same
    torch.save(converted, tmp_path / "w.pt")
    with torch.no_grad():
        torch.testing.assert_close(P.load_probe(tmp_path / "w.pt")(x), world(x))
    save_probe(tmp_path / "c.pt", ProbeModel(models.load("cnn"), "block3", "avg", nn.Linear(96, 16)),
               backbone="cnn", preprocessing={**pre, "mean": [0.0] * 3}, record={})
    with pytest.raises(ValueError, match="backbone imagenet"):
        P.from_probe_file(tmp_path / "c.pt")
