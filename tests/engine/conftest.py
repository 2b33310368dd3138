"""Fixtures the engine's oracle tests share: the tiny seeded CNN and ViT of models_for_tests
(module scope: built once per test module, never trained or changed by the tests)."""
import pytest
from models_for_tests import TinyResNet, TinyViT, seeded


@pytest.fixture(scope="module")
def cnn():
    return seeded(TinyResNet)


@pytest.fixture(scope="module")
def vit():
    return seeded(TinyViT, registers=2)
