"""The open_clip and Hugging Face adapters.

Hugging Face: a tiny randomly initialised ``transformers.CLIPModel`` (no torchvision needed) and a
real word-level fast tokenizer; our logits must equal the model's own ``logits_per_image``.
open_clip needs torchvision, which this project does not install, so its adapter is tested with a
fake that has open_clip's method names and signatures (``encode_image(image, normalize=False)``,
``encode_text(text, normalize=False)``, ``logit_scale`` stored as a log, a tokenizer mapping a list
of strings to a LongTensor (N, context_length)).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from finercam.zeroshot import from_huggingface, from_open_clip

PROMPTS = ["a red wing", "a bird", "a black wing"]


def _oracle_maps(layer, encode, E, scale, images, target, refs, gamma, tokens=False):
    """Eq. 5-8 on ``scale * cos(encode(x), E)`` by full autograd; token layers (N, 1 + hw, D)."""
    store = {}
    h = layer.register_forward_hook(lambda m, i, o: store.__setitem__("A", o[0] if isinstance(o, tuple) else o))
    try:
        z = encode(images)
    finally:
        h.remove()
    A = store["A"]
    logits = scale * F.cosine_similarity(z[:, None], E[None], dim=-1)
    objective = logits[:, target] - gamma * logits[:, refs].mean(1)
    (G,) = torch.autograd.grad(objective.sum(), A)
    if tokens:  # drop the class token, tokens -> (N, D, h, w)
        side = int(round((A.shape[1] - 1) ** 0.5))
        A = A[:, 1:].transpose(1, 2).reshape(A.shape[0], -1, side, side)
        G = G[:, 1:].transpose(1, 2).reshape(G.shape[0], -1, side, side)
    raw = torch.relu((G.mean(dim=(2, 3), keepdim=True) * A).sum(1))
    up = F.interpolate(raw[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    lo, hi = up.amin(dim=(1, 2), keepdim=True), up.amax(dim=(1, 2), keepdim=True)
    return ((up - lo) / (hi - lo + 1e-8)).detach().numpy(), logits.detach().numpy()


# -- open_clip (a fake with its interface) ----------------------------------------------------

class FakeOpenCLIP(nn.Module):
    """open_clip.CLIP's interface: visual tower, text tower, logit_scale = log(1 / 0.07)."""

    def __init__(self, vocab: int = 16, dim: int = 8):
        super().__init__()
        self.visual = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                    nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
                                    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, dim))
        self.token_embedding = nn.Embedding(vocab, dim)
        self.text_projection = nn.Parameter(torch.randn(dim, dim))
        self.logit_scale = nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))
        self.text_calls = 0

    def encode_image(self, image, normalize: bool = False):
        f = self.visual(image)
        return F.normalize(f, dim=-1) if normalize else f

    def encode_text(self, text, normalize: bool = False):
        self.text_calls += 1
        f = self.token_embedding(text).mean(1) @ self.text_projection
        return F.normalize(f, dim=-1) if normalize else f


class FakeTokenizer:
    """open_clip's SimpleTokenizer call: ``tokenizer(texts, context_length=77) -> LongTensor``."""

    def __init__(self):
        self.words: dict[str, int] = {}
        self.calls = 0

    def __call__(self, texts, context_length: int = 6):
        self.calls += 1
        texts = [texts] if isinstance(texts, str) else texts
        out = torch.zeros(len(texts), context_length, dtype=torch.long)
        for i, t in enumerate(texts):
            ids = [self.words.setdefault(w, len(self.words) + 1) for w in t.split()]
            out[i, : len(ids)] = torch.tensor(ids)
        return out


def test_open_clip_adapter_matches_the_models_logits_and_the_equations():
    torch.manual_seed(0)
    model, tok = FakeOpenCLIP().eval(), FakeTokenizer()
    zs = from_open_clip(model, tok, "visual.2", PROMPTS)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    exp = zs.explain(x, target="a red wing", references=["a bird"])
    zs.explain(x, target="a black wing", references=["a bird", "a red wing"])
    assert (model.text_calls, tok.calls) == (1, 1)
    with torch.no_grad():
        E = model.encode_text(tok(PROMPTS))
        want = model.logit_scale.exp() * model.encode_image(x, normalize=True) @ F.normalize(E, dim=-1).t()
    np.testing.assert_allclose(exp.logits, want.numpy(), rtol=1e-5, atol=1e-4)
    maps, _ = _oracle_maps(model.visual[2], model.encode_image, E, float(model.logit_scale.detach().exp()), x, 0, [1], 0.6)
    np.testing.assert_allclose(exp.maps, maps, rtol=1e-4, atol=1e-5)
    assert not any(m._forward_hooks for m in model.modules())


def test_open_clip_adapter_refuses_other_objects():
    with pytest.raises(TypeError, match="encode_text"):
        from_open_clip(nn.Linear(2, 2), FakeTokenizer(), "weight", PROMPTS)


def test_adapters_import_neither_library():
    import ast

    import finercam.zeroshot as zs

    for path in sorted(__import__("pathlib").Path(zs.__file__).parent.glob("*.py")):
        tree = ast.parse(path.read_text())
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not names & {"open_clip", "transformers", "torchvision"}, path.name


# -- Hugging Face CLIPModel (tiny, random) ----------------------------------------------------

@pytest.fixture(scope="module")
def hf():
    import transformers  # in the test extra; needs no torchvision
    from tokenizers import Tokenizer, models, pre_tokenizers

    cfg = transformers.CLIPConfig(
        text_config=dict(vocab_size=12, hidden_size=16, intermediate_size=24, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=8, bos_token_id=0,
                         eos_token_id=1, pad_token_id=1),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=16, intermediate_size=24,
                           num_hidden_layers=2, num_attention_heads=2),
        projection_dim=8)
    torch.manual_seed(0)
    model = transformers.CLIPModel(cfg).eval()
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "a", "bird", "red", "black", "wing"])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]")
    return model, tok


def test_huggingface_adapter_matches_logits_per_image_and_the_equations(hf):
    model, tok = hf
    calls = []
    original = model.get_text_features
    model.get_text_features = lambda *a, **k: (calls.append(1), original(*a, **k))[1]
    try:
        zs = from_huggingface(model, tok, "vision_model.encoder.layers.1", PROMPTS)
        x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
        exp = zs.explain(x, target="a red wing", references=["a bird"])
        zs.explain(x, target="a bird", references=["a black wing"])
    finally:
        del model.get_text_features
    assert len(calls) == 1
    enc = tok(text=PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(pixel_values=x, input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        E = out.text_embeds
    np.testing.assert_allclose(exp.logits, out.logits_per_image.numpy(), rtol=1e-5, atol=1e-4)

    def encode(images):
        f = model.get_image_features(pixel_values=images)
        return f if isinstance(f, torch.Tensor) else f.pooler_output

    maps, _ = _oracle_maps(model.vision_model.encoder.layers[1], encode, E, float(model.logit_scale.detach().exp()),
                           x, 0, [1], 0.6, tokens=True)
    np.testing.assert_allclose(exp.maps, maps, rtol=1e-4, atol=1e-4)
