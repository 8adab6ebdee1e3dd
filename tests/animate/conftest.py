"""Tiny weights, built once per test session by the same command the demo uses."""

import pytest
import torch

from animate.tiny import write_tiny_weights
from animate.weights import load_components


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    return write_tiny_weights(tmp_path_factory.mktemp("weights") / "tiny")


@pytest.fixture(scope="session")
def components(tiny_weights):
    return load_components(tiny_weights, "cpu", torch.float32)
