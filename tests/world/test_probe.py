"""The linear probe on the frozen ImageNet EfficientNet-Lite0 (finercam.world.models.probe)."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import finercam
from finercam.world import datasets
from finercam.world.models import probe as P
from finercam.world.models.imagenet import load_imagenet
from models_for_tests import oracle_gradient_method


@pytest.fixture(scope="module")
def shipped():
    return P.load_probe()


@pytest.fixture(scope="module")
def batch():
    """Fresh test images rendered at the probe's input size (it was trained on such renders)."""
    return datasets.generate(16, seed=3, split="test", size=P.INPUT_SIZE)


def test_pooled_features_are_the_backbones_own(batch):
    """The probe's pooled _bn1 equals EfficientNet's extract_features on the resized, normalised images."""
    net = load_imagenet().model
    probe = P.LinearProbe(net, input_size=128)
    x = torch.from_numpy(batch.images[:2])
    with torch.no_grad():
        z = F.interpolate(x, size=(128, 128), mode="bilinear", align_corners=False)
        expected = net.extract_features((z - 0.5) / 0.5).mean((2, 3))
        np.testing.assert_allclose(probe.pooled(x).numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_shipped_probe(shipped, batch):
    ckpt = torch.load(P.WEIGHTS_DIR / "probe.pt", weights_only=True)
    assert shipped.target_layer == shipped.default_target_layer == "_bn1"
    assert shipped.class_names == datasets.CLASS_NAMES and not shipped.training
    assert shipped._fc.weight.shape == (datasets.NUM_CLASSES, ckpt["state_dict"]["weight"].shape[1])
    assert all(not p.requires_grad for n, p in shipped.named_parameters() if not n.startswith("_fc."))
    with torch.no_grad():
        logits = shipped(torch.from_numpy(batch.images))
    # logits = W pooled + b, with the shipped W and b
    feats = shipped.pooled(torch.from_numpy(batch.images)).detach()
    np.testing.assert_allclose(logits.numpy(), (feats @ ckpt["state_dict"]["weight"].float().T
                                                + ckpt["state_dict"]["bias"].float()).numpy(), atol=1e-4)
    assert ckpt["accuracy"] >= 0.5 and ckpt["config"]["input_size"] == P.INPUT_SIZE
    assert float((logits.argmax(1).numpy() == batch.labels).mean()) >= 0.3


def test_finer_gradcam_on_the_probe_matches_autograd(shipped, batch):
    x = torch.from_numpy(batch.images[:2])
    targets, refs = [int(batch.labels[0]), int(batch.labels[1])], [[1, 2, 3], [4, 5, 6]]
    exp = finercam.FinerCAM(shipped, "_bn1")(x, targets, refs)
    # the oracle differentiates through the layer's output: a copy whose backbone is not frozen
    # (the gradient with respect to the activations is the same)
    unfrozen = copy.deepcopy(shipped).requires_grad_(True)
    raw, maps = oracle_gradient_method(unfrozen, x, "_bn1", "gradcam", targets, refs, 0.6, "mean")
    np.testing.assert_allclose(exp.raw_maps, raw.numpy(), atol=2e-5 * float(raw.abs().max()) + 1e-7)
    np.testing.assert_allclose(exp.maps, maps.numpy(), atol=5e-4)


def test_fit_head_reaches_the_penalised_optimum():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 6)).astype(np.float32) * [1, 2, 3, 0.5, 4, 1] + 5
    y = rng.integers(0, 3, 120)
    x[np.arange(120), y] += 2.0
    w, b = P.fit_head(x, y, num_classes=3, l2=1e-2)
    # In standardised coordinates z = (x - mu) / sd the solution is w_s = w * sd, b_s = b + w mu,
    # and the gradient of the penalised loss vanishes there (plain autograd).
    xt = torch.from_numpy(x).double()
    mu, sd = xt.mean(0), xt.std(0)
    ws = (torch.from_numpy(w).double() * sd).requires_grad_()
    bs = (torch.from_numpy(b).double() + torch.from_numpy(w).double() @ mu).requires_grad_()
    loss = F.cross_entropy(((xt - mu) / sd) @ ws.T + bs, torch.from_numpy(y)) + 1e-2 * (ws * ws).sum()
    loss.backward()
    assert float(ws.grad.abs().max()) < 1e-4 and float(bs.grad.abs().max()) < 1e-4


def test_bad_feature_layers():
    with pytest.raises(ValueError, match="feature_layers"):
        P.LinearProbe(load_imagenet().model, feature_layers=("_blocks.99",))
