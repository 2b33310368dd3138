"""The spot-the-difference bird world: a benchmark with ground truth for Finer-CAM.

Nothing in the engine (:mod:`finercam`) imports this package; it imports the engine.

* :mod:`finercam.world.datasets`: 24 bird classes in 6 families whose siblings differ in one or
  two parts, rendered procedurally with per-pixel part masks (the ground truth of what tells two
  classes apart).
* :mod:`finercam.world.models`: the embedded small CNN and ViT trained on it, with shipped weights
  and their training command.
* :mod:`finercam.world.zeroshot`: the tiny dual encoder (image and text towers), its tokenizer,
  captions and training, and the prompt-localisation study.
"""
