"""ZeroShotFinerCAM against the paper's equations recomputed with plain autograd on the zero-shot
logits ``y_j = s * cos(f(x), e_j)``, text-embedding caching, and bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import finercam
from finercam.world.zeroshot import WordTokenizer
from finercam.zeroshot import ZeroShotFinerCAM, ZeroShotHead

PROMPTS = ["a red wing", "a bird", "a black tail", "a blue head"]


def _encoder(seed: int = 0, dim: int = 6) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),   # "2": the CAM layer
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, dim)).eval()


def _embeddings(n: int = len(PROMPTS), dim: int = 6, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g) * 3.0


def _images(n: int = 3, size: int = 16, seed: int = 2) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _oracle(encoder, layer, E, scale, images, target, refs, gamma, method="gradcam"):
    """The paper's Eq. 5-8 on the zero-shot logits, by full autograd and F.interpolate."""
    store = {}
    h = layer.register_forward_hook(lambda m, i, o: store.__setitem__("A", o))
    try:
        z = encoder(images)
    finally:
        h.remove()
    A = store["A"]
    logits = scale * F.cosine_similarity(z[:, None, :], E[None, :, :].to(z.dtype), dim=-1)
    objective = logits[:, target] - gamma * logits[:, refs].mean(1)
    (G,) = torch.autograd.grad(objective.sum(), A)
    if method == "gradcam":
        raw = torch.relu((G.mean(dim=(2, 3), keepdim=True) * A).sum(1))
    else:  # layercam
        raw = torch.relu((torch.relu(G) * A).sum(1))
    up = F.interpolate(raw[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    lo = up.amin(dim=(1, 2), keepdim=True)
    hi = up.amax(dim=(1, 2), keepdim=True)
    maps = (up - lo) / (hi - lo + 1e-8)
    return raw.detach().numpy(), maps.detach().numpy(), logits.detach().numpy()


@pytest.mark.parametrize("method", ["gradcam", "layercam"])
def test_maps_equal_paper_equations_on_zero_shot_logits(method):
    enc, E, x = _encoder(), _embeddings(), _images()
    zs = ZeroShotFinerCAM(enc, "2", prompts=PROMPTS, text_embeddings=E, scale=50.0, method=method)
    exp = zs.explain(x, target="a red wing", references=["a bird", "a black tail"])
    raw, maps, logits = _oracle(enc, enc[2], E, 50.0, x, 0, [1, 2], 0.6, method)
    np.testing.assert_allclose(exp.logits, logits, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(exp.raw_maps, raw, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(exp.maps, maps, rtol=1e-4, atol=1e-5)
    assert exp.targets.tolist() == [0, 0, 0]
    assert exp.references.tolist() == [[1, 2]] * 3


def test_recombine_and_per_image_prompts_follow_the_equations():
    enc, E, x = _encoder(3), _embeddings(seed=4), _images(seed=5)
    zs = ZeroShotFinerCAM(enc, enc[2], prompts=PROMPTS, text_embeddings=E, scale=100.0)
    exp = zs.explain(x, target=["a red wing", "a black tail", "a blue head"],
                     references=[["a bird"], ["a bird"], ["a bird"]])
    for gamma in (0.0, 1.0, 2.0):
        new = exp.recombine(gamma=gamma)
        for i, t in enumerate([0, 2, 3]):
            _, maps, _ = _oracle(enc, enc[2], E, 100.0, x[i:i + 1], t, [1], gamma)
            np.testing.assert_allclose(new.maps[i], maps[0], rtol=1e-4, atol=1e-5)


def test_head_logits_are_scaled_cosines():
    enc, E, x = _encoder(), _embeddings(), _images()
    head = ZeroShotHead(enc, E, scale=30.0, bias=-2.0)
    want = 30.0 * F.cosine_similarity(enc(x)[:, None], E[None], dim=-1) - 2.0
    torch.testing.assert_close(head(x), want, rtol=1e-5, atol=1e-5)


class _Counting:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.fn(*args, **kwargs)


def test_text_embeddings_are_computed_once():
    tok = WordTokenizer("a red wing bird black tail blue head".split())
    torch.manual_seed(0)
    text = nn.EmbeddingBag(tok.vocab_size, 6, mode="mean", padding_idx=0)
    encoder, tokenizer = _Counting(text), _Counting(tok)
    enc = _encoder()
    zs = ZeroShotFinerCAM(enc, "2", prompts=PROMPTS, text_encoder=encoder, tokenizer=tokenizer)
    for _ in range(3):
        zs.explain(_images(), target="a red wing", references=["a bird"])
    zs.explain(_images(), target="a blue head")
    assert (encoder.calls, tokenizer.calls) == (1, 1)
    with torch.no_grad():
        want = F.normalize(text(tok(PROMPTS)), dim=-1)
    torch.testing.assert_close(zs.text_embeddings, want)


def test_model_leaves_as_it_came():
    enc = _encoder().train()
    enc[0].eval()
    zs = ZeroShotFinerCAM(enc, "2", prompts=PROMPTS, text_embeddings=_embeddings())
    zs.explain(_images(), target="a red wing", references=["a bird"])
    assert [m.training for m in enc.modules()] == [True, False] + [True] * 6
    assert all(not m._forward_hooks and not m._backward_hooks for m in enc.modules())
    assert all(p.grad is None for p in enc.parameters())


# -- bad input ---------------------------------------------------------------------------------

def _zs(**kw):
    kw.setdefault("prompts", PROMPTS)
    kw.setdefault("text_embeddings", _embeddings(len(kw["prompts"])) if isinstance(kw["prompts"], list)
                  and kw["prompts"] else torch.zeros(0, 6))
    return ZeroShotFinerCAM(_encoder(), "2", **kw)


def test_empty_or_degenerate_prompt_lists_are_refused():
    with pytest.raises(ValueError, match="prompts is empty"):
        _zs(prompts=[])
    with pytest.raises(ValueError, match=r"prompts\[1\] is an empty string"):
        _zs(prompts=["a bird", "  "])
    with pytest.raises(ValueError, match="at least two"):
        _zs(prompts=["a bird"])
    with pytest.raises(ValueError, match="twice"):
        _zs(prompts=["a bird", "a bird"])
    with pytest.raises(TypeError, match="prompts must be a list"):
        _zs(prompts="a bird")


def test_target_or_reference_missing_from_prompts():
    zs = _zs()
    with pytest.raises(ValueError, match="target 'a green wing' is not one of the prompts"):
        zs.explain(_images(), target="a green wing", references=["a bird"])
    with pytest.raises(ValueError, match="reference 'a cat' is not one of the prompts"):
        zs.explain(_images(), target="a red wing", references=["a cat"])
    with pytest.raises(ValueError, match="include the target prompt 'a red wing'"):
        zs.explain(_images(), target="a red wing", references=["a red wing"])
    with pytest.raises(ValueError, match="target has 2 prompts for 3 images"):
        zs.explain(_images(), target=["a red wing", "a bird"])


def test_out_of_vocabulary_words_are_named():
    tok = WordTokenizer("a red wing bird".split())
    text = nn.EmbeddingBag(tok.vocab_size, 6, padding_idx=0)
    with pytest.raises(ValueError, match=r"outside the vocabulary: \['epaulets', 'scarlet'\]"):
        ZeroShotFinerCAM(_encoder(), "2", prompts=["scarlet epaulets", "a bird"], text_encoder=text,
                         tokenizer=tok)
    with pytest.raises(ValueError, match="has no words"):
        tok(["..."])


def test_mismatched_embedding_sizes():
    with pytest.raises(ValueError, match="text_embeddings has 3 rows but prompts has 4 entries"):
        _zs(text_embeddings=_embeddings(3))
    zs = _zs(text_embeddings=_embeddings(dim=5, n=4))
    with pytest.raises(ValueError, match="image_encoder returned embeddings of size 6 but the text embeddings have size 5"):
        zs.explain(_images(), target="a red wing", references=["a bird"])
    with pytest.raises(ValueError, match=r"text_embeddings rows \[2\] are all zeros"):
        E = _embeddings()
        E[2] = 0
        _zs(text_embeddings=E)
    with pytest.raises(ValueError, match="NaN"):
        E = _embeddings()
        E[0, 0] = float("nan")
        _zs(text_embeddings=E)


def test_text_source_and_layer_arguments():
    with pytest.raises(ValueError, match="either text_embeddings or text_encoder"):
        _zs(text_encoder=lambda t: t, tokenizer=lambda p: p)
    with pytest.raises(ValueError, match="give text_embeddings, or both"):
        ZeroShotFinerCAM(_encoder(), "2", prompts=PROMPTS, text_encoder=lambda t: t)
    with pytest.raises(ValueError, match="target_layer 'nope' is not a submodule"):
        ZeroShotFinerCAM(_encoder(), "nope", prompts=PROMPTS, text_embeddings=_embeddings())
    with pytest.raises(ValueError, match="target_layer ReLU is not a submodule of the image encoder"):
        ZeroShotFinerCAM(_encoder(), nn.ReLU(), prompts=PROMPTS, text_embeddings=_embeddings())
    with pytest.raises(ValueError, match="scale must be > 0"):
        _zs(scale=0.0)
    with pytest.raises(TypeError, match="image_encoder must be a torch.nn.Module"):
        ZeroShotFinerCAM(lambda x: x, "2", prompts=PROMPTS, text_embeddings=_embeddings())


def test_zero_shot_is_exported_at_top_level():
    assert finercam.ZeroShotFinerCAM is ZeroShotFinerCAM


def test_weight_similarity_ranks_prompts_by_text_embedding_cosine():
    E = _embeddings(seed=7)
    zs = ZeroShotFinerCAM(_encoder(), "2", prompts=PROMPTS, text_embeddings=E,
                          reference_rule="weight_similarity", num_references=2)
    exp = zs.explain(_images(), target="a black tail")
    sim = F.cosine_similarity(E[2][None], E, dim=-1)
    sim[2] = -float("inf")
    want = torch.argsort(sim, descending=True)[:2].tolist()
    assert exp.references.tolist() == [want] * 3


def test_score_cam_follows_eq9_on_zero_shot_logits():
    enc, E, x = _encoder(5), _embeddings(seed=6), _images(n=2, seed=8)
    zs = ZeroShotFinerCAM(enc, "2", prompts=PROMPTS, text_embeddings=E, scale=20.0, method="scorecam")
    exp = zs.explain(x, target="a blue head", references=["a bird", "a red wing"])

    def logits(images):
        with torch.no_grad():
            return 20.0 * F.cosine_similarity(enc(images)[:, None], E[None], dim=-1)

    store = {}
    h = enc[2].register_forward_hook(lambda m, i, o: store.__setitem__("A", o.detach()))
    enc(x)
    h.remove()
    A = store["A"]
    H = F.interpolate(A, size=x.shape[-2:], mode="bilinear", align_corners=False)
    lo, hi = H.amin(dim=(2, 3), keepdim=True), H.amax(dim=(2, 3), keepdim=True)
    H = (H - lo) / (hi - lo + 1e-8)
    base = logits(torch.zeros_like(x[:1]))[0, 3]
    want = []
    for n in range(2):
        y = logits(x[n:n + 1] * H[n][:, None])  # (K, P): one masked image per channel
        alpha = y[:, 3] - 0.6 * y[:, [1, 0]].mean(1) - base
        want.append(torch.relu((alpha[:, None, None] * A[n]).sum(0)).numpy())
    np.testing.assert_allclose(exp.raw_maps, np.stack(want), rtol=1e-4, atol=1e-5)
