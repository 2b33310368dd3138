"""A tiny seeded model and box data set for the runner tests; importable by subprocesses
(``tests`` on PYTHONPATH) as ``evalkit:model`` and ``evalkit:dataset``."""
import torch

CLASSES = 5
SIZE = 16


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(6, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(32, CLASSES))


LAYER = "2"


class BoxDataset(torch.utils.data.Dataset):
    """Seeded noise images with a brighter box; item i is (image, i % 5, box x0, y0, x1, y1)."""

    def __init__(self, n: int = 10, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randn(n, 3, SIZE, SIZE, generator=g)
        self.boxes = []
        for i in range(n):
            x0, y0 = torch.randint(0, SIZE // 2, (2,), generator=g).tolist()
            w, h = torch.randint(3, SIZE // 2, (2,), generator=g).tolist()
            self.images[i, :, y0:y0 + h, x0:x0 + w] += 2.0
            self.boxes.append(torch.tensor([x0, y0, x0 + w, y0 + h]))

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], i % CLASSES, self.boxes[i]


def dataset() -> BoxDataset:
    return BoxDataset()


def killed_child(out: str, after: int) -> None:
    """A child process's entry point: the runner on this model and data set (the settings of
    the tests' ``CLI`` command), SIGKILLed by itself once ``after`` images are recorded."""
    import os
    import signal

    from finercam.evaluation import evaluate

    def kill(recorded: int) -> None:
        if recorded >= after:
            os.kill(os.getpid(), signal.SIGKILL)

    evaluate(model(), LAYER, dataset(), methods=["gradcam"], steps=4, batch_size=4, chunk_size=16,
             out_dir=out, progress=False, verbose=False, after_batch=kill)


if __name__ == "__main__":  # `torchrun --run-path tests/evalkit.py evaluate ...`
    import sys

    from finercam.apps.cli import main

    status = main()
    if status:  # a clean return hands the launcher its value; only a failure exits
        sys.exit(status)


# --- a colour classifier with many classes, for the class-mapping checks --------------------------

COLOUR_CLASSES = 40
#: The model's class of each colour (its logit 10 above the rest).
COLOUR_IDS = {"red": 37, "green": 12, "blue": 25}


def colour_model() -> torch.nn.Module:
    """A per-channel mean, then a linear layer that gives each pure colour its class of
    ``COLOUR_IDS``; the other logits rise slowly with the class id, so that the low ids (the
    sorted-folder default) are never among the top 5 of a pure colour."""
    conv = torch.nn.Conv2d(3, 3, 1, bias=False)
    linear = torch.nn.Linear(3, COLOUR_CLASSES)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(3)[:, :, None, None])
        linear.weight.zero_()
        linear.bias.copy_(0.01 * torch.arange(COLOUR_CLASSES, dtype=torch.float32))
        for channel, name in enumerate(("red", "green", "blue")):
            linear.weight[COLOUR_IDS[name], channel] = 10.0
    return torch.nn.Sequential(conv, torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), linear)


def colour_names() -> list:
    """The colour model's class names in output order: the colours at their ids."""
    names = [f"class {k}" for k in range(COLOUR_CLASSES)]
    for name, k in COLOUR_IDS.items():
        names[k] = name
    return names


def halves(image):
    """A ``--transform`` for the tests: 16 x 16, pixels in [0, 1] scaled to [-1, 1]."""
    import numpy as np
    from PIL import Image

    x = torch.from_numpy(np.asarray(image.resize((16, 16), Image.BILINEAR), np.float32) / 255.0)
    return (x.permute(2, 0, 1) - 0.5) / 0.5
