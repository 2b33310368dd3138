"""Model kinds: output containers, token layers of any size, reshape=, dtypes, DataParallel."""
import numpy as np
import pytest
import torch
from torch import nn

import finercam
from finercam.layers import infer_token_grid
from models_for_tests import (DictOut, ObjOut, TinyResNet, TinyViT, TupleOut, images,
                              oracle_gradient_method, seeded)

TARGETS = [3, 0]
REFS = [[1, 2], [4, 9]]


@pytest.mark.parametrize("wrapper", [DictOut, ObjOut, TupleOut])
def test_output_containers(wrapper):
    net = seeded(TinyResNet)
    x = images(2)
    plain = finercam.FinerCAM(net, "layer2")(x, TARGETS, REFS)
    exp = finercam.FinerCAM(wrapper(net), "net.layer2")(x, TARGETS, REFS)
    np.testing.assert_allclose(exp.maps, plain.maps, atol=1e-6)
    np.testing.assert_allclose(exp.logits, plain.logits, atol=1e-6)


@pytest.mark.parametrize("size", [(32, 32), (24, 40), (44, 28)])
def test_vit_any_input_size_with_registers(size):
    vit = seeded(TinyViT, registers=4)
    x = images(2, size=size)
    exp = finercam.FinerCAM(vit, "blocks.1.norm1", method="layercam")(x, TARGETS, REFS)
    raw, maps = oracle_gradient_method(vit, x, "blocks.1.norm1", "layercam", TARGETS, REFS, 0.6, "mean", prefix=5)
    assert exp.raw_maps.shape == (2, size[0] // 4, size[1] // 4)
    np.testing.assert_allclose(exp.raw_maps, raw.numpy(), atol=2e-5 * float(raw.abs().max()))
    np.testing.assert_allclose(exp.maps, maps.numpy(), atol=5e-4)


def test_token_grid_inference():
    assert infer_token_grid(197, (224, 224)) == (1, 14, 14)
    assert infer_token_grid(261, (224, 224)) == (5, 16, 16)
    assert infer_token_grid(517, (224, 448)) == (5, 16, 32)
    assert infer_token_grid(64, (32, 32)) == (0, 8, 8)
    with pytest.raises(ValueError, match="reshape="):
        infer_token_grid(1000, (32, 32))


def test_reshape_callable_equals_inferred_grid():
    vit = seeded(TinyViT, registers=1)
    x = images(2)

    def reshape(t):
        return t[:, 2:].reshape(t.shape[0], 8, 8, t.shape[2]).permute(0, 3, 1, 2)

    a = finercam.FinerCAM(vit, "blocks.0", reshape=reshape)(x, TARGETS, REFS)
    b = finercam.FinerCAM(vit, "blocks.0")(x, TARGETS, REFS)
    np.testing.assert_allclose(a.maps, b.maps, atol=1e-6)
    with pytest.raises(ValueError, match="reshape must return"):
        finercam.FinerCAM(vit, "blocks.0", reshape=lambda t: t)(x)


def test_channels_last_layer_via_reshape():
    """A layer giving (N, h, w, K), as Swin-style models do."""
    net = seeded(TinyResNet)

    class NHWC(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net
            self.perm = nn.Identity()

        def forward(self, x):
            f = net.layer2(net.layer1(net.stem(x)))
            f = self.perm(f.permute(0, 2, 3, 1))
            return net.fc(f.mean((1, 2)))

    x = images(2)
    a = finercam.FinerCAM(NHWC(), "perm", reshape=lambda t: t.permute(0, 3, 1, 2))(x, TARGETS, REFS)
    b = finercam.FinerCAM(net, "layer2")(x, TARGETS, REFS)
    np.testing.assert_allclose(a.maps, b.maps, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_models(dtype):
    net = seeded(TinyResNet)
    x = images(2)
    ref = finercam.FinerCAM(net, "layer2")(x, TARGETS, REFS)
    low = seeded(TinyResNet).to(dtype)
    exp = finercam.FinerCAM(low, "layer2")(x.to(dtype), TARGETS, REFS)
    assert exp.maps.dtype == np.float32 and exp.logits.dtype == np.float32
    assert np.isfinite(exp.maps).all()
    tol = 0.08 if dtype == torch.bfloat16 else 0.02
    assert np.abs(exp.maps - ref.maps).mean() < tol
    corr = np.corrcoef(exp.maps.ravel(), ref.maps.ravel())[0, 1]
    assert corr > 0.95


def test_data_parallel_unwrapped():
    net = seeded(TinyResNet)
    x = images(2)
    dp = nn.DataParallel(net)
    a = finercam.FinerCAM(dp, "module.layer2")(x, TARGETS, REFS)
    b = finercam.FinerCAM(dp, net.layer2)(x, TARGETS, REFS)
    c = finercam.FinerCAM(net, "layer2")(x, TARGETS, REFS)
    np.testing.assert_allclose(a.maps, c.maps, atol=1e-6)
    np.testing.assert_allclose(b.maps, c.maps, atol=1e-6)


def test_tuple_output_layer():
    """Layers returning tuples (as Hugging Face blocks do) are tapped at their first item."""
    net = seeded(TinyResNet)

    class TupleLayer(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return (self.inner(x), None)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = TupleLayer(nn.Sequential(net.stem, net.layer1, net.layer2))

        def forward(self, x):
            return net.fc(self.body(x)[0].mean((2, 3)))

    a = finercam.FinerCAM(Net(), "body")(images(2), TARGETS, REFS)
    b = finercam.FinerCAM(net, "layer2")(images(2), TARGETS, REFS)
    np.testing.assert_allclose(a.maps, b.maps, atol=1e-6)


def test_target_layer_as_module_and_list():
    net = seeded(TinyResNet)
    a = finercam.FinerCAM(net, net.layer2)(images(2), TARGETS, REFS)
    b = finercam.FinerCAM(net, ["layer2"])(images(2), TARGETS, REFS)
    np.testing.assert_allclose(a.maps, b.maps, atol=0)
    assert a.layer_names == ["layer2"]
