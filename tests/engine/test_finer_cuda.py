"""CUDA paths: the feature grids go to the host for the C core; results equal the CPU ones.

These are the only engine tests that skip, and only where no GPU is present.
"""
import numpy as np
import pytest
import torch

import finercam
from models_for_tests import TinyResNet, TinyViT, images, seeded

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

TARGETS = [3, 0]
REFS = [[1, 2], [4, 9]]


@pytest.mark.parametrize("method", ["gradcam", "layercam", "gradcam++", "scorecam", "cam"])
def test_cuda_equals_cpu_cnn(method):
    net = seeded(TinyResNet)
    x = images(2)
    cpu = finercam.FinerCAM(net, "layer2", method=method)(x, TARGETS, REFS)
    gpu_net = seeded(TinyResNet).cuda()
    before = [len(m._forward_hooks) for m in gpu_net.modules()]
    gpu = finercam.FinerCAM(gpu_net, "layer2", method=method, score_budget_mb=0.1)(x.cuda(), TARGETS, REFS)
    assert [len(m._forward_hooks) for m in gpu_net.modules()] == before
    np.testing.assert_allclose(gpu.maps, cpu.maps, atol=2e-3)
    np.testing.assert_allclose(gpu.logits, cpu.logits, rtol=1e-3, atol=1e-3)


def test_cuda_vit_tokens_and_half():
    vit = seeded(TinyViT, registers=2)
    x = images(2)
    cpu = finercam.FinerCAM(vit, "blocks.1.norm1", method="layercam")(x, TARGETS, REFS)
    gvit = seeded(TinyViT, registers=2).cuda()
    gpu = finercam.FinerCAM(gvit, "blocks.1.norm1", method="layercam")(x.cuda(), TARGETS, REFS)
    np.testing.assert_allclose(gpu.maps, cpu.maps, atol=2e-3)
    half = finercam.FinerCAM(gvit.half(), "blocks.1.norm1", method="layercam")(x.cuda().half(), TARGETS, REFS)
    assert half.maps.dtype == np.float32
    assert np.corrcoef(half.maps.ravel(), cpu.maps.ravel())[0, 1] > 0.95


def test_cuda_no_memory_growth():
    net = seeded(TinyResNet).cuda()
    cam = finercam.FinerCAM(net, "layer2")
    x = images(2).cuda()
    cam(x)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    for _ in range(50):
        cam(x)
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == before
