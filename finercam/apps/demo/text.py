"""The demo's prose: what Finer-CAM shows, the run's finding, the set-up and what each column
means, all written from the run's own numbers."""
from __future__ import annotations

from .plan import GAMMA, NO_SCORECAM, Model, Plan

WHAT_FINER_SHOWS = (
    "Finer-CAM explains what sets a class apart from the classes the model finds most similar. "
    "Grad-CAM follows the gradient of the target's logit y_c; Finer-CAM follows y_c - \u03b3 y_d, "
    "the target minus its references d (the classes with the nearest logits), so the evidence "
    "the target shares with its look-alikes cancels and what differs remains (paper, Eq. 7-8). "
    "The bird world makes this checkable: look-alike species differ on a few named parts "
    "(beak, crest, wing, ...), and the masks of those parts are the ground-truth discriminative "
    "region that the Disc. energy and Part PG columns score.")

PROBE_TEXT = (
    "The paper's setting: one linear layer (2,560 x 16) on the average- and max-pooled last "
    "feature map of a frozen ImageNet EfficientNet-Lite0, trained by finercam probe (71.7 % on "
    "1,024 fresh test images; docs/benchmark.md). "
    "Its birds are the same species in the same order, rendered at 224 x 224 (at 96 x 96 "
    "upsampled it is at chance). An EfficientNet forward at 224 costs tens of milliseconds per "
    "image on a CPU, so the probe covers the first {n} test images, deletion curves the first {d}, "
    "and it has " + NO_SCORECAM + ". Its maps live on a 7 x 7 grid.")


def finding(scores: dict, models: list[Model]) -> str:
    """The run's main finding, from its paired differences with one reference: where Finer moves
    the box energy beyond two standard errors, and how far the maps move elsewhere."""
    up: list[str] = []
    down: list[str] = []
    same: list[str] = []
    for model in models:
        for key, label in model.methods:
            d = scores[model.key][key]["nearest"]["diff"]["energy"]
            name = f"{model.label} {label} ({d['mean']:+.3f} \u00b1 {d['se']:.3f})"
            (up if d["mean"] > 2 * d["se"] else down if d["mean"] < -2 * d["se"]
             else same).append(name)
    text = (f"Main finding of this run (one reference, Finer minus baseline over the same images): "
            f"Finer moves more of the map's energy into the bird's box for {_names(up)}; less for "
            f"{_names(down)}; no difference beyond two standard errors for {_names(same)}.")
    for model in models:
        corr = [scores[model.key][key]["nearest"]["map_correlation"] for key, _ in model.methods]
        text += (f" The {model.label}'s Finer maps correlate {min(corr):.2f} to {max(corr):.2f} "
                 "with its baseline maps.")
    return text + (" docs/benchmark.md reads the full run method by method and shows that a "
                   "gain of the shipped ViT is one trained model's, not the ViT's: other "
                   "checkpoints of the same architecture range from losses to gains.")


def _names(group: list[str]) -> str:
    return ", ".join(group) or "none"


def column_definitions(steps: int, model: Model) -> list[tuple[str, str]]:
    """What each column of one model's tables means, written where its tables appear."""
    covered = (f"; {NO_SCORECAM}" if not model.score_images else
               f"; Score-CAM rows: the first {model.score_images}")
    rendered = f", rendered at {model.size} x {model.size}" if model.size != 96 else ""
    return [
        ("images", f"the {model.label}'s first {model.images} test images{rendered}{covered}."),
        ("Del. \u2193", f"deletion AUC: the target's probability as the map's top pixels are set "
         f"to 0 in {steps} steps, area under that curve, over the first "
         f"{min(model.deletion_images, model.images)} images; lower is better (the map found "
         "the evidence)."),
        ("RD@0.05, RD@0.1", "relative confidence drop (paper, Eq. 10) after deleting the map's "
         "top 5 % / 10 % of pixels: the target's probability drop minus the nearest reference's, "
         "(p_c - p*_c) - (p_d - p*_d). Each drop lies in [-1, 1], so RD lies in [-2, 2]; it "
         "exceeds 1 when the deletion takes most of the target's probability and the reference "
         "gains."),
        ("Loc.", "the paper's energy pointing game: the share of the map's energy inside "
         "the bird's bounding box."),
        ("Disc. energy", "the share of the map's energy inside the ground-truth discriminative "
         "region: the visible parts whose attributes differ between the target and its "
         "reference(s)."),
        ("Part PG", "pointing game on that region: the share of maps whose maximum lies in it."),
        ("empty maps", "maps the ReLU emptied (zero everywhere, marked \"empty map\" in the "
         "figures); their energy is undefined and left out of the means."),
    ]


def setup_text(plan: Plan, seed: int) -> str:
    """The run's set-up in one paragraph."""
    return (f"{plan.images} test images of the bird world (seed {seed}), 16 species in 4 "
            "families; the three embedded models: the CNN and the ViT on 96 x 96 renders, the "
            f"linear probe on the first {plan.probe_images} of the same birds rendered at 224 x 224 "
            f"(deletion curves on its first {plan.probe_deletion_images}; {NO_SCORECAM}); "
            f"gamma = {GAMMA}; references = the classes with the "
            "nearest logits to the true class. Baseline maps and every Finer setting come from one "
            "model call per method (Explanation.recombine). Masked pixels are set to 0. Deletion "
            f"curves ({plan.steps} steps) cover the first {plan.deletion_images} images and "
            f"Score-CAM (one forward per channel and image) the first {plan.score_images} for the "
            "CNN and the ViT: like the probe's, these are balanced prefixes (labels cycle through "
            "the 16 classes); every other column covers all of a model's images.")
