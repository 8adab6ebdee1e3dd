"""NaN from a reduced-precision VAE decode (fp16 overflow on CUDA) never reaches the output
as black frames: the walk decodes such a chunk again in float32 (animate.diffusion.vae), and
fails in one sentence if even that gives NaN.

On CPU the overflow is simulated: the VAE is made bfloat16 (a reduced precision CPU runs)
and every reduced-precision decode is turned into NaN, for the keyframes and the latent
in-betweens alike.
"""

import copy
import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from animate import animate, settings_from_inputs
from animate.diffusion import vae as vae_module
from animate.inputs.settings import INPUT_DEFAULTS


def settings():
    return settings_from_inputs(**{
        **INPUT_DEFAULTS,
        "prompt_start": "a red apple", "prompt_end": "a green pear", "width": 64, "height": 64,
        "num_inference_steps": 3, "num_animation_frames": 3, "num_interpolation_steps": 3,
        "gif_frames_per_second": 10, "film_interpolation": False, "intermediate_output": True, "seed": 3,
    })


def rgb_frames(path):
    """Every frame of a PNG or GIF as float RGB arrays (H, W, 3) in 0..255."""
    with Image.open(path) as image:
        frames = []
        for index in range(getattr(image, "n_frames", 1)):
            image.seek(index)
            frames.append(np.asarray(image.convert("RGB"), dtype=float))
        return frames


@pytest.fixture
def nan_in_reduced_precision(monkeypatch):
    """decode_chunk gives all-NaN images whenever the VAE is not float32; counts the calls."""
    real = vae_module.decode_chunk
    calls = {"reduced": 0, "float32": 0}

    def overflowing(vae, latents):
        images = real(vae, latents)
        if vae.dtype == torch.float32:
            calls["float32"] += 1
            return images
        calls["reduced"] += 1
        return torch.full_like(images, float("nan"))

    monkeypatch.setattr(vae_module, "decode_chunk", overflowing)
    return calls


def test_nan_decode_is_redone_in_float32_and_no_frame_is_black(components, tmp_path, nan_in_reduced_precision, capsys):
    reference = [rgb_frames(path) for path in animate(components, settings(), tmp_path / "reference")]
    capsys.readouterr()
    nan_in_reduced_precision.update(reduced=0, float32=0)

    half_vae = copy.deepcopy(components.vae).to(torch.bfloat16)
    reduced = dataclasses.replace(components, vae=half_vae)
    outputs = list(animate(reduced, settings(), tmp_path / "reduced"))

    assert [path.name for path in outputs] == ["keyframe-000.png", "keyframe-001.png", "keyframe-002.png", "animation.gif"]
    assert nan_in_reduced_precision["reduced"] > 0, "the simulated overflow never happened"
    assert nan_in_reduced_precision["float32"] == nan_in_reduced_precision["reduced"], "a NaN chunk was not decoded again"
    assert "gave NaN; decoding again in float32" in capsys.readouterr().out
    assert half_vae.dtype == torch.bfloat16, "the VAE must go back to its own dtype after the float32 decode"
    for path, expected in zip(outputs, reference):
        frames = rgb_frames(path)
        assert len(frames) == len(expected)
        for frame, reference_frame in zip(frames, expected):
            assert frame.max() > 40, f"{path.name} has a black frame"
            # float32 decode of bfloat16-rounded VAE weights: close to the float32 walk.
            assert np.abs(frame - reference_frame).mean() < 12, path.name


def test_nan_even_in_float32_fails_in_one_sentence_before_any_file(components, tmp_path, monkeypatch):
    monkeypatch.setattr(vae_module, "decode_chunk", lambda vae, latents: torch.full((latents.shape[0], 3, 64, 64), float("nan")))
    with pytest.raises(RuntimeError) as caught:
        list(animate(components, settings(), tmp_path))
    message = str(caught.value)
    assert message.startswith("The VAE decoded NaN even in float32") and message.endswith(".")
    assert "\n" not in message and message.count(". ") == 0
    assert list(tmp_path.iterdir()) == []
