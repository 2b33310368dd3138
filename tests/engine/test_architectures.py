"""Every architecture without configuration: tiny random-init Hugging Face ``transformers``
classifiers of each family (tests/hf_tiny.py), explained with ``target_layer="auto"`` and no
``reshape=``, against the paper's objective ``y_c - gamma * mean_t y_t`` differentiated by plain
torch autograd through the whole model, on a layout written from the architecture; the two
cases that used to be silently wrong; channels-last outputs; half precision."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hf_tiny import CASES, FAMILIES, GAMMA, NUM_LABELS, REFS, TARGETS, build, oracle_gradcam
from models_for_tests import TinyResNet, images, seeded
from torch import nn

import finercam
from finercam.layers import PatchGrid, feature_layout, infer_token_grid, token_layout


@pytest.mark.parametrize("key,size", CASES, ids=[f"{k}-{h}x{w}" for k, (h, w) in CASES])
def test_family_auto_layer_matches_autograd(key, size):
    family = FAMILIES[key]
    model = build(key, size)
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    first = finercam.suggest_layers(model, size)[0]
    cell = (size[0] // family.patch, size[1] // family.patch)
    assert (first.name, first.grid) == (family.layer, cell)
    cam = finercam.FinerCAM(model, "auto", gamma=GAMMA)
    exp = cam(x, TARGETS, REFS)
    assert [n for n, _ in cam.layers] == [family.layer]
    want = oracle_gradcam(model, x, family)
    assert exp.raw_maps.shape == want.shape == (2, *cell)
    scale = float(np.abs(want).max())
    assert scale > 0
    np.testing.assert_allclose(exp.raw_maps, want, atol=1e-6 * scale, rtol=0)


def test_finer_layer_suggested_for_cnns_and_swin():
    """The second suggestion is the previous stage, on a grid twice as fine."""
    for key, finer in [("resnet", "resnet.encoder.stages.0"), ("convnext", "convnext.encoder.stages.0"),
                       ("swin", "swin.encoder.layers.0.blocks.0.layernorm_before")]:
        got = finercam.suggest_layers(build(key, (32, 32)), (32, 32))
        assert [s.name for s in got][1] == finer
        assert got[1].grid == (8, 8) and got[0].grid == (4, 4)
        x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        exp = finercam.FinerCAM(build(key, (32, 32)), finer, gamma=GAMMA)(x, TARGETS, REFS)
        fam = FAMILIES[key]
        want = oracle_gradcam(build(key, (32, 32)), x, type(fam)(fam.name, fam.build, finer, 4, fam.prefix), finer)
        # 1e-4 of the map's peak: a random ResNet's first stage leaves a map of ~4e-4 after the
        # ReLU, the difference of float32 sums of terms ~100x larger (the two-pass mean gradient
        # rounds differently from the oracle's one backward of the objective).
        np.testing.assert_allclose(exp.raw_maps, want, atol=1e-4 * float(np.abs(want).max()), rtol=0)


def test_swin_pads_an_input_that_is_not_a_multiple_of_its_patch():
    """Swin pads 30 x 30 to 32 x 32 before its 4-px patch embedding: 8 x 8 patches, 4 x 4 after
    merging (ceil(30 / 8)), which the count alone could not tell."""
    model = build("swin", (30, 30))
    assert finercam.suggest_layers(model, (30, 30))[0].grid == (4, 4)
    x = torch.randn(2, 3, 30, 30)
    exp = finercam.FinerCAM(model, "auto", gamma=GAMMA)(x, TARGETS, REFS)
    want = oracle_gradcam(model, x, FAMILIES["swin"], grid=(4, 4))
    np.testing.assert_allclose(exp.raw_maps, want, atol=1e-6 * float(np.abs(want).max()), rtol=0)


def test_dinov2_registers_84x56_read_from_the_patch_embedding():
    """29 tokens at 84 x 56: the count alone fits 1 + 7 x 4 (p = 12) and 5 + 6 x 4 (p = 14);
    the model's 14-pixel patch embedding decides 5 + 6 x 4."""
    with pytest.raises(ValueError, match="2 layouts"):
        infer_token_grid(29, (84, 56))
    assert token_layout((2, 29, 16), (84, 56), PatchGrid(6, 4, "conv"), "blk") == (5, 6, 4)
    model = build("dinov2_registers", (84, 56))
    layer = "dinov2_with_registers.encoder.layer.0"       # a block's own output, 29 tokens
    x = torch.randn(2, 3, 84, 56)
    exp = finercam.FinerCAM(model, layer, gamma=GAMMA)(x, TARGETS, REFS)
    want = oracle_gradcam(model, x, FAMILIES["dinov2_registers"], layer)
    np.testing.assert_allclose(exp.raw_maps, want, atol=3e-6 * float(np.abs(want).max()), rtol=0)


def test_pooled_output_is_refused():
    """Swin's pooler gives (N, C, 1): a pooled vector, never 'C tokens of width 1'."""
    model = build("swin", (32, 32))
    with pytest.raises(ValueError, match=r"'swin.pooler'.*\(2, 12, 1\).*reshape="):
        finercam.FinerCAM(model, "swin.pooler")(torch.randn(2, 3, 32, 32), TARGETS, REFS)


def test_attention_pooled_token_is_refused():
    """SigLIP's attention-pooling head gives one token (N, 1, D): a pooled vector, not a map."""
    model = build("siglip", (32, 32))
    with pytest.raises(ValueError, match=r"'vision_model.head.layernorm'.*\(2, 1, 16\).*single token.*reshape="):
        finercam.FinerCAM(model, "vision_model.head.layernorm")(torch.randn(2, 3, 32, 32), TARGETS, REFS)


def test_unexplained_and_ambiguous_token_counts_are_refused():
    patch = PatchGrid(4, 4, "conv")
    with pytest.raises(ValueError, match=r"'x'.*\(1, 40, 8\).*reshape="):
        token_layout((1, 40, 8), (32, 32), patch, "x")      # 40 - 16 = 24 > 16 prefix tokens
    with pytest.raises(ValueError, match="fit no patch grid.*reshape="):
        token_layout((1, 1000, 8), (32, 32), None, "x")
    with pytest.raises(ValueError, match="2 layouts.*reshape="):
        token_layout((1, 29, 8), (84, 56), None, "x")


class _NHWC(nn.Module):
    """TinyResNet whose layer2 is read through a channels-last view, as torchvision's Swin and
    ConvNeXt blocks give; no patch embedding, so the grid is the input's over a stride."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.perm = nn.Identity()

    def forward(self, x):
        f = self.net.layer2(self.net.layer1(self.net.stem(x)))
        f = self.perm(f.permute(0, 2, 3, 1))
        return self.net.fc(f.mean((1, 2)))


def test_channels_last_output_is_permuted():
    net = seeded(TinyResNet)
    x = images(2)
    a = finercam.FinerCAM(_NHWC(net), "perm")(x, TARGETS, REFS)
    b = finercam.FinerCAM(net, "layer2")(x, TARGETS, REFS)
    np.testing.assert_allclose(a.raw_maps, b.raw_maps, atol=1e-6 * float(np.abs(b.raw_maps).max()))
    assert feature_layout((2, 7, 7, 768), (224, 224), None, "s") == "last"
    assert feature_layout((2, 768, 7, 7), (224, 224), None, "s") == "first"


def test_channels_last_tie_is_decided_by_the_module_or_refused():
    """(N, 8, 8, 8) on an 8 x 8 patch grid reads both ways: a conv says first, a LayerNorm over
    the last dim says last, anything else is refused."""
    patch = PatchGrid(8, 8, "conv")
    shape = (2, 8, 8, 8)
    assert feature_layout(shape, (32, 32), patch, "c", nn.Conv2d(8, 8, 3)) == "first"
    assert feature_layout(shape, (32, 32), patch, "n", nn.LayerNorm(8)) == "last"
    with pytest.raises(ValueError, match=r"'s'.*\(2, 8, 8, 8\).*reshape="):
        feature_layout(shape, (32, 32), patch, "s", nn.Sequential())


#: Largest per-pixel difference from float32's [0, 1] maps allowed (measured: bfloat16 and
#: autocast <= 0.009, float16 <= 0.0015 on these families; see docs/architectures.md).
HALF_TOLERANCE = {torch.bfloat16: 0.03, torch.float16: 0.005}
HALF_CASES = [("dinov2", (56, 84)), ("convnext", (32, 48)), ("swin", (32, 48))]


@pytest.mark.parametrize("key,size", HALF_CASES, ids=[k for k, _ in HALF_CASES])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])
def test_half_precision_model_matches_float32(key, size, dtype):
    """The model in bfloat16 / float16 gives float32's maps within HALF_TOLERANCE; what reaches
    the C core (and the Explanation) is float32."""
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(3))
    ref = finercam.FinerCAM(build(key, size), "auto", gamma=GAMMA)(x, TARGETS, REFS)
    exp = finercam.FinerCAM(build(key, size).to(dtype), "auto", gamma=GAMMA)(x.to(dtype), TARGETS, REFS)
    assert exp.maps.dtype == np.float32 and exp.raw_maps.dtype == np.float32
    assert exp.logits.dtype == np.float32
    assert float(np.abs(exp.maps - ref.maps).max()) < HALF_TOLERANCE[dtype]


@pytest.mark.parametrize("key,size", HALF_CASES + [("vit", (32, 48))], ids=[k for k, _ in HALF_CASES] + ["vit"])
def test_autocast_matches_float32(key, size):
    """Under torch.autocast (bfloat16 on the CPU) the maps equal float32's within bfloat16's
    HALF_TOLERANCE."""
    model = build(key, size)
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(4))
    ref = finercam.FinerCAM(model, "auto", gamma=GAMMA)(x, TARGETS, REFS)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        exp = finercam.FinerCAM(model, "auto", gamma=GAMMA)(x, TARGETS, REFS)
    assert exp.maps.dtype == np.float32
    assert float(np.abs(exp.maps - ref.maps).max()) < HALF_TOLERANCE[torch.bfloat16]


def test_suggest_layers_leaves_the_model_as_it_came():
    model = build("vit", (32, 32)).train()
    torch.set_grad_enabled(True)
    before = {n: m.training for n, m in model.named_modules()}
    hooks = sum(len(m._forward_hooks) for m in model.modules())
    got = finercam.suggest_layers(model, (3, 32, 32))
    assert got[0].name == "vit.layers.1.layernorm_before" and got[0].channels == 16
    assert {n: m.training for n, m in model.named_modules()} == before
    assert sum(len(m._forward_hooks) for m in model.modules()) == hooks
    assert torch.is_grad_enabled()
    assert all(p.grad is None for p in model.parameters())


def test_suggest_layers_bad_input():
    with pytest.raises(TypeError, match="model"):
        finercam.suggest_layers("resnet", (32, 32))
    with pytest.raises(ValueError, match="input_size"):
        finercam.suggest_layers(nn.Linear(2, 2), (0, 32))
    with pytest.raises(TypeError, match="input_size"):
        finercam.suggest_layers(nn.Linear(2, 2), "32")
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, NUM_LABELS))
    with pytest.raises(ValueError, match="no layer.*target_layer="):
        finercam.suggest_layers(flat, (8, 8))


def test_auto_with_the_bird_models():
    """The built-in models' own default layers are the suggestions (block3 / blocks.3.norm1)."""
    from finercam.world import models

    cnn = models.load("cnn")
    got = finercam.suggest_layers(cnn, (96, 96))
    assert [s.name for s in got] == ["block3", "block2"]
    vit = models.load("vit")
    assert finercam.suggest_layers(vit, (96, 96))[0].name == vit.default_target_layer


def test_auto_resolves_once_and_matches_the_named_layer():
    net = seeded(TinyResNet)
    x = images(2)
    auto = finercam.FinerCAM(net, "auto")
    a = auto(x, TARGETS, REFS)
    name = finercam.suggest_layers(net, (32, 32))[0].name
    b = finercam.FinerCAM(net, name)(x, TARGETS, REFS)
    assert a.layer_names == [name]
    np.testing.assert_array_equal(a.maps, b.maps)
    assert F.mse_loss(torch.from_numpy(auto(x, TARGETS, REFS).maps), torch.from_numpy(a.maps)) == 0


def test_suggestions_for_the_imagenet_network():
    """EfficientNet-Lite0 at 224: its documented target layer ``_bn1`` (7 x 7), then the last
    block of the 14 x 14 stage, not the stem's 112 x 112 map nor the 9 x 9 padding around 7 x 7."""
    from finercam.world.models.imagenet import load_imagenet

    net = load_imagenet()
    got = finercam.suggest_layers(net.model, (224, 224))
    assert [(s.name, s.grid, s.channels) for s in got] == [("_bn1", (7, 7), 1280), ("_blocks.10", (14, 14), 112)]
    assert got[0].name == net.target_layers[0]
