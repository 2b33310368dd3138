"""torchcam 0.5.0's FinerCAM (the paper's objective) as an external oracle, GradCAM and LayerCAM bases.

torchcam leaves its maps at the layer's grid, min-maxed with eps 1e-8: we compare with
``minmax(raw_maps)``.
"""
import copy

import numpy as np
import pytest
import torchcam.methods as torchcam_methods   # a test extra (pyproject): installed, never skipped

import finercam
from finercam import kernels
from models_for_tests import TinyResNet, TinyViT, images, seeded


@pytest.mark.parametrize("base,method", [("GradCAM", "gradcam"), ("LayerCAM", "layercam")])
@pytest.mark.parametrize("explicit", [False, True])
def test_against_torchcam_finercam(base, method, explicit):
    net = seeded(TinyResNet)
    x = images(3)
    targets = [3, 0, 7]
    refs = [[1, 2, 5], [4, 9, 3], [0, 8, 2]] if explicit else None
    m = copy.deepcopy(net)
    with torchcam_methods.FinerCAM(m, "layer2", input_shape=(3, 32, 32), base_method=getattr(torchcam_methods, base),
                                   gamma=0.6, num_references=3) as extractor:
        scores = m(x)
        want = extractor(class_idx=targets, scores=scores, comparison_idx=refs)[0].detach().numpy()
    exp = finercam.FinerCAM(net, "layer2", method=method, gamma=0.6)(x, targets, refs)
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
