"""Image files as the models see them: :func:`read_image` turns any file Pillow reads into one
RGB picture, and :class:`ImageReadError` says which file could not be read and why.

Pillow is the optional extra ``viz`` (``pip install finercam[viz]``); it is imported when a file is
read, so ``import finercam`` does not need it.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["ImageReadError", "read_image"]


class ImageReadError(ValueError):
    """A file that is not a readable image; the message names the file and the reason.

    ``path`` holds the file as it was given, so a caller that reads many files (``finercam
    explain``) can report this one and go on with the others.

    >>> err = ImageReadError("notes.txt", "not an image format Pillow knows")
    >>> str(err), err.path, isinstance(err, ValueError)
    ("cannot read image 'notes.txt': not an image format Pillow knows", 'notes.txt', True)
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"cannot read image {str(path)!r}: {reason}")
        self.path = str(path)
        self.reason = reason


def _to_8bit(im):
    """16-bit and float greys (modes I;16*, I, F) scaled to 8 bits by their type's range; a plain
    ``convert`` would clip everything above 255 to white.

    A value ``v`` becomes ``round(255 * v / top)``, with ``top`` = 65535 for integer modes whose
    values fit 16 bits, 1 for float images in [0, 1], else the image's own maximum.
    """
    from PIL import Image

    a = np.asarray(im, dtype=np.float64)
    top = 65535.0 if im.mode.startswith("I") and a.max(initial=0) <= 65535 else max(a.max(initial=0), 1e-12)
    if im.mode == "F" and a.max(initial=0) <= 1.0:
        top = 1.0
    return Image.fromarray(np.round(np.clip(a / top, 0, 1) * 255).astype(np.uint8), "L")


def read_image(path: str | os.PathLike):
    """A file as a PIL RGB image, EXIF orientation applied; :class:`ImageReadError` otherwise.

    Transparent pixels are put on white; 16-bit images are scaled to 8 bits; an animation gives
    its first frame; CMYK, grey and palette images are converted.

    >>> import tempfile; from PIL import Image
    >>> path = Path(tempfile.mkdtemp()) / "dot.png"
    >>> Image.new("RGBA", (3, 2), (255, 0, 0, 0)).save(path)
    >>> im = read_image(path)
    >>> im.mode, im.size, im.getpixel((0, 0))
    ('RGB', (3, 2), (255, 255, 255))
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    if p.is_dir():
        raise ImageReadError(path, "a folder, not an image file")
    if not p.is_file():
        raise ImageReadError(path, "no such file")
    if p.stat().st_size == 0:
        raise ImageReadError(path, "the file is empty (0 bytes)")
    try:
        with Image.open(p) as im:
            im.seek(0)  # an animation: its first frame
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I", "F") or im.mode.startswith("I;16"):
                im = _to_8bit(im)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                # Transparent pixels are shown on white, not on whatever colour they happen to hold.
                rgba = im.convert("RGBA")
                flat = Image.new("RGB", rgba.size, (255, 255, 255))
                flat.paste(rgba, mask=rgba.getchannel("A"))
                return flat
            return im.convert("RGB")
    except UnidentifiedImageError:
        raise ImageReadError(path, "not an image format Pillow knows") from None
    except Image.DecompressionBombError as exc:  # more pixels than Pillow's guard allows
        raise ImageReadError(path, str(exc)) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # truncated or corrupt files
        raise ImageReadError(path, str(exc)) from None
