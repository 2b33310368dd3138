"""``--model hf:DIR``: a Hugging Face image classifier saved with ``save_pretrained``, loaded from
that folder alone (``local_files_only``: no network, no hub), for every command that takes
``--model`` (they all load through :func:`finercam.apps.inputs.load_model`).

What comes with it:

* the model (``AutoModelForImageClassification``) in eval mode, in float32 whatever dtype it
  was saved in (the commands feed float32 images; for half precision load it yourself and pass
  it to :class:`finercam.FinerCAM`);
* no target layer of its own: without ``--layer`` (or with ``--layer auto``) the commands take
  the first of :func:`finercam.suggest_layers` at their input size
  (:func:`finercam.apps.inputs.with_layer`);
* the preprocessing of the folder's ``preprocessor_config.json`` (read as JSON, so no image
  processor class and no torchvision are needed): the size (its crop size when it crops, else
  its resize size; the photo is resized whole to that square, the processor's centre crop is not
  applied, so the map lies on the whole photo), ``image_mean`` and ``image_std``. Without that
  file: ``config.image_size`` (else 224) and the ImageNet mean/std;
* the class names of ``config.id2label``.

``transformers`` is the optional extra ``finercam[hf]``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Tuple

from .inputs import (
    DEFAULT_SIZE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ModelInputs,
    UsageError,
    _whole,
    class_names_of,
    default_transform,
)

__all__ = ["HF_PREFIX", "load_hf_model", "processor_preprocessing"]

#: The ``--model`` prefix of a local Hugging Face folder.
HF_PREFIX = "hf:"


def _side(value: Any) -> Optional[int]:
    """A processor size entry (an int, or a dict with height/width or shortest_edge) -> pixels."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, dict):
        for key in ("height", "shortest_edge", "width"):
            if isinstance(value.get(key), int):
                return int(value[key])
    return None


def processor_preprocessing(folder: Path, config: Any) -> Tuple[int, Tuple[float, ...], Tuple[float, ...]]:
    """``(size, mean, std)`` of ``folder``'s ``preprocessor_config.json`` (see the module
    docstring), else of ``config.image_size`` and ImageNet's normalisation.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "preprocessor_config.json").write_text('{"size": {"height": 32, "width": 32}, '
    ...     '"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}')
    >>> processor_preprocessing(d, None)
    (32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    """
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        image_size = getattr(config, "image_size", None)
        size = image_size if isinstance(image_size, int) and image_size > 0 else DEFAULT_SIZE
        return size, IMAGENET_MEAN, IMAGENET_STD
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"--model hf:{folder}: cannot read {path.name}: {exc}") from None
    crop = _side(spec.get("crop_size")) if spec.get("do_center_crop") else None
    size = crop or _side(spec.get("size")) or DEFAULT_SIZE
    if spec.get("do_normalize", True) is False:
        return size, (0.0,) * 3, (1.0,) * 3
    mean = tuple(float(v) for v in spec.get("image_mean") or IMAGENET_MEAN)
    std = tuple(float(v) for v in spec.get("image_std") or IMAGENET_STD)
    if len(mean) == 1:
        mean, std = mean * 3, std * 3
    return size, mean, std


def load_hf_model(spec: str) -> ModelInputs:
    """``hf:DIR`` -> :class:`~finercam.apps.inputs.ModelInputs` (see the module docstring); a
    missing folder, a folder without a classifier, or no ``transformers`` is a ``UsageError``."""
    folder = Path(spec[len(HF_PREFIX):]).expanduser()
    if not (folder / "config.json").is_file():
        raise UsageError(f"--model {spec}: {folder} is not a save_pretrained folder (no config.json)")
    import torch

    try:
        import transformers
    except ImportError:
        raise UsageError(f"--model {spec} needs the transformers package: "
                         "pip install 'finercam[hf]'") from None
    try:
        model = transformers.AutoModelForImageClassification.from_pretrained(
            str(folder), local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"--model {spec}: not an image classifier transformers can load: {first}") from None
    model.eval()
    size, mean, std = processor_preprocessing(folder, model.config)
    return ModelInputs(model, None, default_transform(size, mean, std), _whole, size, mean, std,
                       class_names_of(model), spec)
