"""The shipped tiny dual encoder: loads offline, classifies fresh images zero-shot, refuses words it
does not know, and serves ZeroShotFinerCAM and the open_clip adapter unchanged."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from finercam.world.datasets import birds, generate
from finercam.world.zeroshot import load_dual_encoder
from finercam.zeroshot import ZeroShotFinerCAM, from_open_clip
from finercam.world.zeroshot.captions import class_prompts, vocabulary
from finercam.world.zeroshot.dual_encoder import WEIGHTS
from finercam.world.zeroshot.train import zero_shot_accuracy

#: Measured: 0.749 on 1024 fresh test images, 0.754 on the 256 below (docs/zeroshot.md); the test
#: asks for a margin below it on 256 images.
MIN_ACCURACY = 0.68


@pytest.fixture(scope="module")
def model():
    return load_dual_encoder()


def test_weights_are_small_and_load_offline(model):
    assert WEIGHTS.stat().st_size < 1_000_000
    assert not model.training
    assert list(model.tokenizer.words) == vocabulary()


def test_zero_shot_accuracy_on_fresh_images(model):
    # seed 7 of the test split: images the trainer (train split, seed 0) never saw
    acc = zero_shot_accuracy(model, n=256, seed=7, split="test")
    assert acc >= MIN_ACCURACY, acc


def test_classify_is_scaled_cosine(model):
    b = generate(4, seed=3, split="test")
    x = torch.from_numpy(b.images)
    with torch.no_grad():
        img = model.encode_image(x)
        txt = model.encode_text(model.tokenizer(class_prompts()))
        want = model.logit_scale.exp() * torch.nn.functional.cosine_similarity(img[:, None], txt[None], dim=-1)
    torch.testing.assert_close(model.classify(x, class_prompts()), want, rtol=1e-5, atol=1e-4)


def test_unknown_words_are_named(model):
    with pytest.raises(ValueError, match=r"outside the vocabulary: \['epaulets', 'scarlet'\]"):
        ZeroShotFinerCAM(model.image_encoder, model.target_layer, prompts=["scarlet epaulets", "a bird"],
                         text_encoder=model.encode_text, tokenizer=model.tokenizer)


def test_open_clip_adapter_serves_the_tiny_model(model):
    prompts = ["a black wing", "a bird"]
    x = torch.from_numpy(generate(2, seed=5, split="test", start=1).images)
    a = from_open_clip(model, model.tokenizer, "image_encoder.layer3", prompts)
    b = ZeroShotFinerCAM(model.image_encoder, "layer3", prompts=prompts, text_encoder=model.encode_text,
                         tokenizer=model.tokenizer, scale=model.scale)
    ea = a.explain(x, target="a black wing", references=["a bird"])
    eb = b.explain(x, target="a black wing", references=["a bird"])
    np.testing.assert_allclose(ea.maps, eb.maps, rtol=1e-5, atol=1e-6)
    assert ea.maps.shape == (2, 96, 96) and birds.NUM_CLASSES == len(class_prompts())


def test_cli_zeroshot_writes_the_study(tmp_path, capsys):
    import json

    from finercam.apps.cli import main
    from finercam.world.zeroshot.study import prompt_localisation

    out = tmp_path / "z.json"
    assert main(["zeroshot", "--n", "8", "--seed", "2", "--out", str(out)]) == 0
    got = json.loads(out.read_text())["prompt_localisation"]
    want = prompt_localisation(n=8, seed=2)
    for key in ("alone", "vs_bird", "area"):
        assert got["all"][key] == pytest.approx(want["all"][key], rel=1e-6)
    assert "vs \"a bird\"" in capsys.readouterr().out


def test_cli_zeroshot_bad_arguments(capsys):
    from finercam.apps.cli import main

    assert main(["zeroshot", "--n", "0"]) == 2
    assert "--n must be >= 1" in capsys.readouterr().err
    assert main(["zeroshot", "--n", "4", "--faithfulness", "--classifier", "no.such:thing"]) == 2
    assert "--classifier: cannot import" in capsys.readouterr().err


def test_faithfulness_study_uses_the_classifiers_nearest_class():
    import finercam
    from torch import nn

    from finercam.world.zeroshot.study import faithfulness_study

    torch.manual_seed(0)
    clf = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(8, birds.NUM_CLASSES)).eval()
    res = faithfulness_study(clf, "1", n=8, seed=4, batch=8)
    b = generate(8, seed=4, split="test")
    x = torch.from_numpy(b.images)
    with torch.no_grad():
        logits = clf(x)
    c = int(b.labels[0])
    gap = (logits[0] - logits[0, c]).abs()
    gap[c] = float("inf")
    d = int(torch.argmin(gap))
    assert res["example"]["pair"] == (c, d)
    want = finercam.FinerCAM(clf, "1", num_references=1)(x[:1], targets=[c], references=[[d]]).maps[0]
    np.testing.assert_allclose(res["example"]["classifier_map"], want, rtol=1e-5, atol=1e-6)
    assert 0 <= res["region_share"]["classifier"] <= 1 and res["images"] <= 8


def test_readme_zero_shot_block_runs():
    import pathlib
    import re

    readme = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("## Zero-shot models"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    env: dict = {}
    exec(compile(code, "README.md", "exec"), env)
    exp, alone = env["exp"], env["alone"]
    assert exp.targets.tolist() == [0, 0] and exp.references.tolist() == [[2], [2]]
    np.testing.assert_allclose(alone, exp.recombine(gamma=0.0).maps, atol=1e-6)
