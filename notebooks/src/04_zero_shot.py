# %% [markdown]
# # Zero-shot: compare prompts, and examine a classifier's faithfulness
#
# With a CLIP-style image-text model the classes are text prompts: the logit of prompt j is
# `y_j = s * cos(f(x), e_j)`, f the image encoder, e_j the prompt's text embedding, s the logit
# scale. `finercam.ZeroShotFinerCAM` wraps that as a classifier, so every option of `FinerCAM`
# applies, and Finer-CAM compares prompts as it compares classes (paper, Sec. 3.3):
# "a black wing" *against* "a bird" highlights the wing rather than the whole bird.
#
# finercam ships a tiny dual encoder trained on its bird world (so this runs offline in
# seconds); `from_open_clip` and `from_huggingface` adapt real CLIP models the same way (see the
# last cell and the [zero-shot page](../docs/zeroshot.md)).

# %%
%matplotlib inline
%config InlineBackend.figure_formats = ["jpeg"]  # figures small enough to commit
import matplotlib
import numpy as np
import torch

import finercam
from finercam import viz
from finercam.world.datasets import SpotTheDifference, birds
from finercam.world.zeroshot import load_dual_encoder
from finercam.world.zeroshot.captions import attribute_prompt, discriminative_attributes
from finercam.world.zeroshot.study import energy_share

matplotlib.rcParams["figure.dpi"] = 72

dual = load_dual_encoder()
data = SpotTheDifference(split="test", n=16, seed=0)
images = torch.stack([data[i][0] for i in range(8)])
labels = [data[i][1] for i in range(8)]
parts = torch.stack([data[i][2]["parts"] for i in range(8)]).numpy()     # (N, P, H, W) part masks

# %% [markdown]
# ## Prompts compared
#
# The prompts are the classes: the text embeddings are computed once, here, and cached. Each
# image gets the prompt naming the colour of its own wing, explained alone (plain Grad-CAM of
# `y_prompt`, `exp.baseline()`) and against "a bird" (`y_prompt - 0.6 * y_bird`, `exp.maps`),
# both from the same call.

# %%
wing = birds.PARTS.index("wing")
prompts_per_image = [attribute_prompt("wing", "colour", birds.CLASS_PARTS[c]["wing"][0]) for c in labels]
prompts = sorted(set(prompts_per_image)) + ["a bird"]
zs = finercam.ZeroShotFinerCAM(dual.image_encoder, dual.target_layer, prompts=prompts,
                               text_encoder=dual.encode_text, tokenizer=dual.tokenizer,
                               scale=dual.scale)
exp = zs.explain(images, target=prompts_per_image, references=["a bird"])
alone = exp.baseline()
print(prompts)
n = 1
viz.compare(images[n], {f'"{prompts_per_image[n]}" alone': alone.maps[n],
                        f'"{prompts_per_image[n]}" vs "a bird"': exp.maps[n]})

# %% [markdown]
# The wing's ground-truth mask tells how much of each map's energy sits on the wing
# (`sum(M * R) / sum(M)`; a uniform map scores the wing's area):

# %%
masks = parts[:, wing]
print("wing area          ", masks.mean(axis=(1, 2)).mean().round(3))
print("prompt alone       ", np.nanmean(energy_share(alone.maps, masks)).round(3))
print('prompt vs "a bird" ', np.nanmean(energy_share(exp.maps, masks)).round(3))

# %% [markdown]
# Everything an `Explanation` offers works on prompts too: another comparison strength, or
# another reference, without running the model again (the reference must be among the prompts,
# whose weights the call stored):

# %%
viz.gamma_sweep(images[n], [exp.recombine(gamma=g).maps[n] for g in (0.0, 0.3, 0.6, 1.0)],
                [0.0, 0.3, 0.6, 1.0])

# %% [markdown]
# ## Faithfulness examination (Sec. 4.3, App. A.2)
#
# Does a classifier look at the traits that really tell a class from its most similar class?
# 1. the classifier's Finer map of class c against its most similar class d (Eq. 5);
# 2. the zero-shot maps of the attributes that c has and d lacks, each against "a bird": the
#    "ground-truth" difference;
# 3. their agreement: Pearson correlation and the overlap (IoU) of the top 10% pixels.
#
# `examine_faithfulness` takes any classifier's maps and any `ZeroShotFinerCAM`; here the
# classifier is the embedded CNN.

# %%
from finercam.world.models import load
from finercam.world.zeroshot.study import examine_faithfulness, zero_shot_cam

clf = load("cnn")
cam = finercam.FinerCAM(clf, clf.default_target_layer, num_references=1)
clf_exp = cam(images, targets=labels)
most_similar = clf_exp.references[:, 0]
attribute_prompts = [[attribute_prompt(*fact) for fact in discriminative_attributes(c, int(d))]
                     for c, d in zip(labels, most_similar)]
for c, d, a in list(zip(labels, most_similar, attribute_prompts))[:3]:
    print(f"{birds.CLASS_NAMES[c]} vs {birds.CLASS_NAMES[d]}: {a}")

# %%
zs_world = zero_shot_cam(dual)          # the dual encoder over every attribute prompt of the world
faith = examine_faithfulness(clf_exp.maps, zs_world, images, attribute_prompts)
faith.summary()

# %%
viz.compare(images[0], {"classifier: Finer vs nearest": faith.classifier_maps[0],
                        "zero-shot attributes vs 'a bird'": np.nanmean(faith.attribute_maps[0], axis=0)})

# %% [markdown]
# `faithfulness_study()` runs this over many test images, with a control (the body-colour prompt,
# a trait siblings share); `finercam zeroshot --faithfulness` prints its table.
#
# ## Real CLIP models
#
# With open_clip or Hugging Face transformers installed (neither is a dependency), the adapters
# build the same object; layers are named inside your model, and ViT token layers are laid on
# their patch grid automatically:
#
# ```python
# from finercam.zeroshot import from_open_clip, from_huggingface
# zs = from_open_clip(model, open_clip.get_tokenizer("ViT-B-32"),
#                     "visual.transformer.resblocks.11", ["red epaulets", "bird"])
# zs = from_huggingface(clip_model, clip_processor, "vision_model.encoder.layers.11",
#                       ["red epaulets", "bird"])
# exp = zs.explain(pixel_values, target="red epaulets", references=["bird"])
# ```
