"""Tiny random-init Hugging Face ``transformers`` classifiers (no weights, no network) of the
families finercam is verified on, with the layout each must have: the oracle's side of
tests/engine/test_architectures.py, written from the architectures' papers, not read from finercam."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

NUM_LABELS = 6
TARGETS = [0, 3]
REFS = [[1, 2], [4, 5]]
GAMMA = 0.6


def _vit_kw(**kw):
    return dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                num_labels=NUM_LABELS, **kw)


def _tower(**kw):
    return dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, **kw)


def _text():
    return dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                vocab_size=64, bos_token_id=0, eos_token_id=1, pad_token_id=1)


@dataclass(frozen=True)
class Family:
    """A family: how to build it for an input size, the layer finercam must suggest, and that
    layer's layout (``prefix`` tokens, then ``patch``-pixel patches; ``prefix=None``: a feature
    map, channels first unless ``channels_last``)."""

    name: str
    build: Callable[[tuple[int, int]], torch.nn.Module]
    layer: str
    patch: int
    prefix: int | None = None
    channels_last: bool = False


def vit(size):
    import transformers as T
    return T.ViTForImageClassification(T.ViTConfig(image_size=list(size), patch_size=8, **_vit_kw()))


def deit(size):
    import transformers as T
    return T.DeiTForImageClassificationWithTeacher(T.DeiTConfig(image_size=list(size), patch_size=8, **_vit_kw()))


def dinov2(size):
    import transformers as T
    return T.Dinov2ForImageClassification(T.Dinov2Config(image_size=56, patch_size=14, mlp_ratio=2,
                                                         **_tower(num_labels=NUM_LABELS)))


def dinov2_registers(size):
    import transformers as T
    cfg = T.Dinov2WithRegistersConfig(image_size=56, patch_size=14, mlp_ratio=2, num_register_tokens=4,
                                      **_tower(num_labels=NUM_LABELS))
    return T.Dinov2WithRegistersForImageClassification(cfg)


def swin(size):
    import transformers as T
    return T.SwinForImageClassification(T.SwinConfig(image_size=size[0], patch_size=4, embed_dim=6, depths=[1, 1],
                                                     num_heads=[1, 2], window_size=2, num_labels=NUM_LABELS))


def convnext(size):
    import transformers as T
    return T.ConvNextForImageClassification(T.ConvNextConfig(patch_size=4, num_stages=2, hidden_sizes=[12, 20],
                                                             depths=[1, 1], num_labels=NUM_LABELS))


def resnet(size):
    import transformers as T
    return T.ResNetForImageClassification(T.ResNetConfig(embedding_size=8, hidden_sizes=[12, 20], depths=[1, 1],
                                                         layer_type="basic", num_labels=NUM_LABELS))


def beit(size):
    import transformers as T
    return T.BeitForImageClassification(T.BeitConfig(image_size=size[0], patch_size=8, use_mean_pooling=True,
                                                     **_vit_kw()))


def clip(size):
    import transformers as T
    cfg = T.CLIPConfig(vision_config=_tower(image_size=size[0], patch_size=8), text_config=_text(),
                       num_labels=NUM_LABELS)
    return T.CLIPForImageClassification(cfg)


def siglip(size):
    import transformers as T
    cfg = T.SiglipConfig(vision_config=_tower(image_size=size[0], patch_size=8), text_config=_text(),
                         num_labels=NUM_LABELS)
    return T.SiglipForImageClassification(cfg)


# (family, input sizes); the suggested layer and its layout are the architecture's.
FAMILIES = {
    "vit": Family("ViT", vit, "vit.layers.1.layernorm_before", 8, prefix=1),
    "deit": Family("DeiT (class + distillation tokens)", deit, "deit.layers.1.layernorm_before", 8, prefix=2),
    "dinov2": Family("DINOv2", dinov2, "dinov2.encoder.layer.1.norm1", 14, prefix=1),
    "dinov2_registers": Family("DINOv2 with 4 registers", dinov2_registers,
                               "dinov2_with_registers.encoder.layer.1.norm1", 14, prefix=5),
    "swin": Family("Swin", swin, "swin.encoder.layers.1.blocks.0.layernorm_before", 8, prefix=0),
    "convnext": Family("ConvNeXt", convnext, "convnext.encoder.stages.1", 8),
    "resnet": Family("ResNet", resnet, "resnet.encoder.stages.1", 8),
    "beit": Family("BEiT", beit, "beit.layers.1.layernorm_before", 8, prefix=1),
    "clip": Family("CLIP vision tower", clip, "vision_model.encoder.layers.1.layer_norm1", 8, prefix=1),
    "siglip": Family("SigLIP", siglip, "vision_model.encoder.layers.1.layer_norm1", 8, prefix=0),
}

#: (family key, (H, W)): square everywhere, non-square where the architecture allows it.
CASES = [
    ("vit", (32, 32)), ("vit", (32, 48)), ("deit", (32, 32)), ("deit", (48, 32)),
    ("dinov2", (56, 56)), ("dinov2", (56, 84)), ("dinov2_registers", (56, 56)), ("dinov2_registers", (84, 56)),
    ("swin", (32, 32)), ("swin", (32, 48)), ("convnext", (32, 32)), ("convnext", (32, 48)),
    ("resnet", (32, 32)), ("resnet", (48, 32)), ("beit", (32, 32)), ("clip", (32, 32)), ("siglip", (32, 32)),
]


def build(key: str, size, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = FAMILIES[key].build(tuple(size)).eval()
    with torch.no_grad():        # random-init heads are near zero: spread the logits
        for p in model.parameters():
            if p.ndim == 2 and p.shape[0] == NUM_LABELS:
                p.normal_(0, 0.5)
    return model


def oracle_gradcam(model, x, family, layer=None, grid=None):
    """Grad-CAM raw maps (Eq. 2, 7, 8 with the references averaged in the objective) by one full
    ``backward()`` of the objective; the layer's output laid out by the family's own layout."""
    box = {}
    name = layer or family.layer

    def keep(mod, inp, out):
        t = out[0] if isinstance(out, tuple) else out
        t.retain_grad()
        box["a"] = t

    handle = dict(model.named_modules())[name].register_forward_hook(keep)
    try:
        with torch.enable_grad():
            y = model(x).logits
            rows = torch.arange(len(TARGETS))
            obj = y[rows, TARGETS] - GAMMA * y[rows[:, None], torch.tensor(REFS)].mean(1)
            obj.sum().backward()
    finally:
        handle.remove()
    a, g = box["a"].detach().double(), box["a"].grad.double()
    if a.ndim == 3:                           # prefix tokens, then patch tokens row-major
        h, w = grid or (x.shape[2] // family.patch, x.shape[3] // family.patch)
        a, g = (t[:, family.prefix:].reshape(len(t), h, w, -1).permute(0, 3, 1, 2) for t in (a, g))
    raw = torch.relu((g.mean((2, 3), keepdim=True) * a).sum(1))
    return raw.numpy()
