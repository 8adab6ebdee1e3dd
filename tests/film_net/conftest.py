"""Fixtures for the film_net tests."""

import pytest

from film_golden import Golden


@pytest.fixture(scope="session")
def golden_128x192() -> Golden:
    return Golden("public_128x192.npz")


@pytest.fixture(scope="session")
def golden_96x160() -> Golden:
    return Golden("public_96x160_flow8.npz")

