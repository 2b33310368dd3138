"""``finercam zeroshot --faithfulness --data cub:ROOT`` on a CUB-format tree of the bird world:
the attribute choice and prompts against the world's own, and the agreement recomputed by hand."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from finercam import FinerCAM
from finercam.apps import cli, inputs
from finercam.evaluation import datasets as D
from finercam.evaluation.faithfulness import attribute_prompt, discriminative_attributes
from finercam.world.datasets import birds
from finercam.world.datasets import official as W
from finercam.world.zeroshot import captions
from finercam.world.zeroshot.study import zero_shot_cam


def test_prompts_and_attribute_choice_match_the_world():
    names = W.cub_attribute_names()
    for cub_name, world_name in zip(names, birds.ATTRIBUTE_NAMES, strict=True):
        part, kind, value = world_name.split(":")
        assert attribute_prompt(cub_name) == captions.attribute_prompt(part, kind, value)
    matrix = birds.ATTRIBUTES * 100.0
    for c in range(birds.NUM_CLASSES):
        for d in range(birds.NUM_CLASSES):
            if c != d:
                mine = [birds.ATTRIBUTE_NAMES[j] for j in discriminative_attributes(matrix, c, d)]
                assert mine == [":".join(f) for f in captions.discriminative_attributes(c, d)]


def test_cub_faithfulness_by_hand(tmp_path):
    truth = W.write_cub(tmp_path / "cub", n_train=16, n_test=4, size=96)
    out = tmp_path / "f.json"
    assert cli.main(["zeroshot", "--faithfulness", "--data", f"cub:{tmp_path / 'cub'}", "--classifier", "cnn",
                     "--n", "4", "--out", str(out)]) == 0
    got = json.loads(out.read_text())["faithfulness"]
    found = inputs.load_model("cnn")
    ds = D.CUB(tmp_path / "cub", "test", view=D.View(found.transform, found.crop))
    x = torch.stack([ds[i][0] for i in range(4)])
    labels = [w.label for w in truth["test"]]
    exp = FinerCAM(found.model, found.layer, num_references=1, candidates=1)(x, targets=labels)
    zs = zero_shot_cam(prompts=list(dict.fromkeys(
        [attribute_prompt(a) for a in W.cub_attribute_names()] + ["a bird"])), num_references=1, candidates=1)
    best = []
    for i, (c, d) in enumerate(zip(labels, exp.references[:, 0].tolist(), strict=True)):
        prompts = [captions.attribute_prompt(*f) for f in captions.discriminative_attributes(c, d)]
        if not prompts:
            continue
        m = F.interpolate(torch.from_numpy(np.asarray(exp.maps[i:i + 1], np.float32))[:, None], size=(96, 96),
                          mode="bilinear", align_corners=False)[0, 0].numpy().ravel()
        xi = x[i:i + 1]  # the classifier's input is the zero-shot input here: both a 96-px resize in [0, 1]
        r = [np.corrcoef(m, zs.explain(xi, target=[p], references=["a bird"]).maps[0].ravel())[0, 1] for p in prompts]
        best.append(max(r))
    assert got["images"] == len(best)
    assert got["attributes"]["best_correlation"] == pytest.approx(np.mean(best), rel=1e-4)
