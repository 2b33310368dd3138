"""torchcam 0.5.0's FinerCAM (the paper's objective) as an external oracle, GradCAM and LayerCAM bases.

torchcam leaves its maps at the layer's grid, min-maxed with eps 1e-8: we compare with
``minmax(raw_maps)``. Where torchcam does not apply: its Grad-CAM++ is another formula (and its
normalisation a no-op), it has no XGrad-CAM or HiResCAM base, and it fuses several layers by an
element-wise max (finercam: the mean), so those are held to the oracles of test_finer_oracles.py.
"""
import copy

import numpy as np
import pytest
import torch
import torchcam.methods as torchcam_methods   # a test extra (pyproject): installed, never skipped

import finercam
from finercam import kernels
from models_for_tests import TinyResNet, TinyViT, images, seeded


def torchcam_maps(net, x, base, targets, refs=None, **kw):
    """torchcam's FinerCAM on layer2 of a deep copy of ``net``: (N, h, w) maps at the grid."""
    m = copy.deepcopy(net)
    with torchcam_methods.FinerCAM(m, "layer2", input_shape=(3, 32, 32), base_method=getattr(torchcam_methods, base),
                                   **kw) as extractor:
        scores = m(x)
        return extractor(class_idx=targets, scores=scores, comparison_idx=refs)[0].detach().numpy()


@pytest.mark.parametrize("base,method", [("GradCAM", "gradcam"), ("LayerCAM", "layercam")])
@pytest.mark.parametrize("explicit", [False, True])
def test_against_torchcam_finercam(base, method, explicit):
    net = seeded(TinyResNet)
    x = images(3)
    targets = [3, 0, 7]
    refs = [[1, 2, 5], [4, 9, 3], [0, 8, 2]] if explicit else None
    want = torchcam_maps(net, x, base, targets, refs, gamma=0.6, num_references=3)
    exp = finercam.FinerCAM(net, "layer2", method=method, gamma=0.6)(x, targets, refs)
    np.testing.assert_allclose(kernels.minmax(exp.raw_maps), want, atol=2e-5)


@pytest.mark.parametrize("base,method", [("GradCAM", "gradcam"), ("LayerCAM", "layercam")])
def test_against_torchcam_when_the_target_leads_by_40(base, method):
    """Where pytorch-grad-cam's objective flips sign (test_finer_pgc.py), the paper's does not:
    it still agrees with torchcam, which implements the paper's."""
    net = seeded(TinyResNet)
    x = images(3)
    with torch.no_grad():
        y = net(x)
        others = torch.cat([y[:, :3], y[:, 4:]], 1).amax(1)
        net.fc.bias[3] += 40.0 + float((others - y[:, 3]).max())
    want = torchcam_maps(net, x, base, [3, 3, 3], gamma=0.6, num_references=3)
    exp = finercam.FinerCAM(net, "layer2", method=method)(x, targets=3)
    assert (want.max((1, 2)) > 0.5).all()
    np.testing.assert_allclose(kernels.minmax(exp.raw_maps), want, atol=2e-5)


def test_against_torchcam_reference_cap():
    """Both cap the references at the C - 1 other classes; finercam says so."""
    net = seeded(TinyResNet, num_classes=3)
    x = images(3)
    want = torchcam_maps(net, x, "GradCAM", [0, 1, 2], gamma=0.6, num_references=5)
    with pytest.warns(UserWarning, match="num_references=5, .* using num_references=2"):
        exp = finercam.FinerCAM(net, "layer2", num_references=5)(x, targets=[0, 1, 2])
    np.testing.assert_allclose(kernels.minmax(exp.raw_maps), want, atol=2e-5)


def test_against_torchcam_on_tokens():
    vit = seeded(TinyViT, registers=0)
    x = images(2)

    def reshape(t):
        return t[:, 1:].reshape(t.shape[0], 8, 8, t.shape[2]).permute(0, 3, 1, 2)

    m = copy.deepcopy(vit)
    with torchcam_methods.FinerCAM(m, "blocks.1", input_shape=(3, 32, 32), base_method=torchcam_methods.GradCAM,
                                   gamma=1.0, num_references=2, reshape_transform=reshape) as extractor:
        scores = m(x)
        want = extractor(class_idx=[1, 2], scores=scores)[0].detach().numpy()
    exp = finercam.FinerCAM(vit, "blocks.1", gamma=1.0, num_references=2)(x, [1, 2])
    np.testing.assert_allclose(kernels.minmax(exp.raw_maps), want, atol=2e-5)
