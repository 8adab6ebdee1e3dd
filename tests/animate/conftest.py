"""The tiny weights loaded once per test session (tiny_weights: tests/conftest.py)."""

import subprocess

import pytest
import torch
from diffusers.pipelines.stable_diffusion.safety_checker import (
    StableDiffusionSafetyChecker,
)
from transformers import CLIPConfig, CLIPImageProcessorPil

from animate.weights import load_components


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The tiny models gain nothing from intra-op threads, and on a shared 2-core machine
    spinning OpenMP threads make every op 10x slower when other work runs. Restored after
    each module, so other packages' tests keep their threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def components(tiny_weights):
    return load_components(tiny_weights, "cpu", torch.float32)


SAFETY_IMAGE_SIZE = 32


def tiny_safety_checker(threshold: float) -> tuple[StableDiffusionSafetyChecker, CLIPImageProcessorPil]:
    """diffusers' checker at toy size; `threshold` is every concept's cosine threshold."""
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2),
        vision_config=dict(
            hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
            image_size=SAFETY_IMAGE_SIZE, patch_size=8,
        ),
        projection_dim=8,
    )
    checker = StableDiffusionSafetyChecker(config).eval()
    with torch.no_grad():
        checker.concept_embeds.normal_()
        checker.special_care_embeds.normal_()
        checker.concept_embeds_weights.fill_(threshold)
        checker.special_care_embeds_weights.fill_(threshold)
    processor = CLIPImageProcessorPil(
        size={"shortest_edge": SAFETY_IMAGE_SIZE}, crop_size={"height": SAFETY_IMAGE_SIZE, "width": SAFETY_IMAGE_SIZE}
    )
    return checker, processor


@pytest.fixture
def make_safety_checker():
    """tiny_safety_checker(threshold): flags nothing at 2.0, everything at -2.0."""
    return tiny_safety_checker


@pytest.fixture
def started(monkeypatch):
    """Every process the encoders start, in order, recorded as it starts."""
    processes = []
    real_popen = subprocess.Popen

    def recording_popen(*args, **kwargs):
        processes.append(real_popen(*args, **kwargs))
        return processes[-1]

    monkeypatch.setattr("animate.output.ffmpeg.subprocess.Popen", recording_popen)
    return processes
