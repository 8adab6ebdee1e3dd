"""The tiny SD 2.x and SDXL weights: the same bytes every time, and real checkpoints of their
kind for diffusers' own pipelines. (The default SD 1.x kind: tests/animate/test_weights.py.)"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

from animate import animate, settings_from_inputs, tiny
from tests.animate.output.encoding import decoded_gif
from tests.animate.test_weights import digests
from tests.conftest import REPO_ROOT

WRITERS = {"sd2": tiny.write_tiny_sd2_weights, "sdxl": tiny.write_tiny_sdxl_weights}


@pytest.mark.parametrize("kind", WRITERS)
def test_tiny_weights_of_each_kind_are_the_same_bytes_every_time(tmp_path, kind):
    first = digests(WRITERS[kind](tmp_path / "first"))
    assert first == digests(WRITERS[kind](tmp_path / "second"))
    assert "film_net/film_net_style.safetensors" in first
    assert [name for name in first if name.endswith((".bin", ".pt", ".pth", ".ckpt"))] == [
        "upscaler/realesr-general-x4v3.pth"  # as Real-ESRGAN's release file is
    ]
    if kind == "sdxl":
        for folder in ("text_encoder_2/model.safetensors", "tokenizer_2/vocab.json", "tokenizer_2/merges.txt"):
            assert f"stable-diffusion/{folder}" in first


def test_each_kind_goes_to_its_own_folder_by_default(tmp_path, monkeypatch):
    written = []  # where main() would write; nothing is written
    for name in ("write_tiny_weights", "write_tiny_sd2_weights", "write_tiny_sdxl_weights"):
        monkeypatch.setattr(tiny, name, lambda out_dir, name=name: written.append((name, out_dir)) or Path(out_dir))
    for argv in (["--kind", "sd"], ["--kind", "sd2"], ["--kind", "sdxl"], ["--kind", "sdxl", str(tmp_path)]):
        assert tiny.main(argv) == 0
    assert written == [
        ("write_tiny_weights", "weights/tiny"),
        ("write_tiny_sd2_weights", "weights/tiny-sd2"),
        ("write_tiny_sdxl_weights", "weights/tiny-sdxl"),
        ("write_tiny_sdxl_weights", str(tmp_path)),
    ]


@pytest.mark.parametrize(
    "kind, pipeline_class", [("sd2", StableDiffusionPipeline), ("sdxl", StableDiffusionXLPipeline)]
)
def test_diffusers_runs_the_tiny_weights_as_its_own_pipeline(tmp_path, kind, pipeline_class):
    folder = WRITERS[kind](tmp_path / kind) / "stable-diffusion"
    pipeline = pipeline_class.from_pretrained(folder, local_files_only=True)
    pipeline.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(0)
    images = pipeline(
        "a red apple", num_inference_steps=2, height=64, width=64, output_type="np", generator=generator
    ).images
    assert images.shape == (1, 64, 64, 3) and np.isfinite(images).all()
    assert images.std() > 0.01  # an image, not a flat colour


def test_the_tiny_films_in_betweens_blend_their_keyframes(components, tmp_path):
    """The demo's request, made small: each in-between's mean colour lies between its two
    keyframes' and every frame is a picture, not a near-black one. With random weights
    throughout, the tiny FILM made dark frames (mean RGB 0, 11, 55) between keyframes of
    mean 143, 106, 97, and the demo's video flashed four times a second."""
    example = json.loads((REPO_ROOT / "script" / "example-request.json").read_text())["input"]
    steps = 5
    request = {
        **example, "width": 128, "height": 128, "num_inference_steps": 5, "num_animation_frames": 3,
        "num_interpolation_steps": steps, "gif_ping_pong": False, "output_format": "gif", "seed": 0,
    }
    [path] = animate(components, settings_from_inputs(**request), tmp_path)
    pictures, _, _ = decoded_gif(path)
    means = np.array([picture.reshape(-1, 3).mean(axis=0) for picture in pictures])
    assert len(means) == 2 * steps + 1
    palette_error = 4.0  # GIF's 256 colours move a frame's mean by a few levels
    for start in range(0, len(means) - 1, steps):
        left, right = means[start], means[start + steps]
        low, high = np.minimum(left, right) - palette_error, np.maximum(left, right) + palette_error
        for index in range(start + 1, start + steps):
            assert (low <= means[index]).all() and (means[index] <= high).all(), (index, means[index], left, right)
    assert means.mean(axis=1).min() > 0.5 * means[::steps].mean(axis=1).min()
