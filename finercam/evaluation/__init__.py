"""The data-set runner as a library: the paper's Table 1 (and its ablations) on your model and data.

``finercam.evaluate(model, target_layer, dataset, ...)`` (:func:`evaluate`) explains every image
with each CAM method, with and without Finer, scores every map (deletion AUC, RD and the target's
confidence drop at each masking fraction, and, where the data set has boxes or masks, the energy
pointing game "Loc." and the pointing game), and averages over the data set.

Resumable. With ``out_dir``, each batch's per-image results are appended to
``out_dir/per_image.jsonl`` (:mod:`.journal`). A run that is killed and started again with the
same arguments skips every batch already recorded, so the final table equals that of an
uninterrupted run: batches are a fixed grid over the data set indices (``batch_size``
consecutive indices), a batch is either recorded whole or computed again whole, duplicates are
dropped by index, and means are exact sums (``math.fsum``).

Distributed. Under ``torchrun --nproc-per-node N`` the process group is initialised
(:mod:`.distributed`); rank r evaluates every N-th batch of those not yet recorded (the ranks
agree on that set) and appends to ``per_image.rank{r}.jsonl``; the ranks then exchange their
records (so ``out_dir`` need not be shared between machines) and rank 0 writes the table. The
batch grid does not depend on N, so the merged table equals the single-process one.

Data (:mod:`.data`): a torch ``Dataset``, a folder ``root/<class>/<image>`` (with
``root/boxes.csv``), a registered data set ``name:ROOT[:split]`` or an import string. A folder's
label is its index among the sorted folder names, unless ``labels`` (the model's class names in
output order) maps each folder name to the model's class of that name. With ``target="label"``,
a run whose labels are among the model's top-5 classes for less than 5 % of the first batch stops,
naming the likely causes (class order, preprocessing) and the options (``labels``,
``target="predicted"``). Outputs that look like probabilities give a ``UserWarning``.

Before anything is written, every argument is checked (a ``TypeError``/``ValueError`` naming it)
and the first batch is forwarded (timed, with the target layer's shape captured; :mod:`.model`):
a model with one output, a layer without a feature map, a label outside the model's classes or
an ``out_dir`` holding another run stops the run with nothing written, with an
:class:`EvaluationInputError` (a ``ValueError``: what ``finercam evaluate`` prints as one line).

Cost (:mod:`.plan`). ``methods`` defaults to Grad-CAM and Layer-CAM, plus Score-CAM when its one
forward per channel of the target layer is at most 4x the forwards the metrics make for its rows
(the embedded CNN's 96 channels: yes; EfficientNet-Lite0's 1,280: no). Masked images and
Score-CAM's inputs are forwarded ``chunk_size`` at a time: by default the fastest size of a
short calibration when it costs at most 2 % of the run's forwards, else a rule (the largest
power of two up to 64 whose inputs fit in 8 MiB on CPU). With ``verbose`` the plan and an
estimate from the timed forward are printed before the first batch; ``progress`` shows a bar
counting images, with an ETA.

Outputs in ``out_dir`` (:mod:`.tables`): ``table.md`` (also printed), ``table.csv``,
``table.json`` (the rows, the configuration, the image count and every unreadable image).

Rows (:mod:`.scoring`): per method, ``"Grad-CAM"`` (gamma = 0, the base method) and
``"Grad-CAM + Finer"`` (the configured gamma, references and aggregation), then the ablations:
``"... gamma=0.2"`` (Fig. 6b), ``"... ref=2"`` (compared with the 2nd most similar class only,
Table 2) and ``"... agg=max"`` (Table 3). Targets are the data set labels (``target="label"``)
or the predictions.

Extending. A new data set is one entry of :data:`finercam.evaluation.data.READERS` (``name`` ->
the import string of its reader, which receives the root, the split, the model's transform and
crop and the class names); its items may carry boxes or masks and parts. A new column is one
entry of :data:`finercam.evaluation.tables.COLUMN_KINDS` plus its scorer in
:mod:`finercam.evaluation.scoring` (a per-image array under the column's key); every table
(``finercam evaluate``, the demo, the ablation) then has it.
"""
from __future__ import annotations

from .data import ImageFolder, Item, Unreadable, resolve_data
from .model import EvaluationInputError
from .runner import evaluate
from .tables import COLUMN_KINDS, EvalResult, columns

__all__ = ["COLUMN_KINDS", "EvalResult", "EvaluationInputError", "ImageFolder", "Item", "Unreadable", "columns",
           "evaluate", "resolve_data"]
