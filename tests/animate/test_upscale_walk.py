"""Walks with `upscale` on the tiny weights: every frame and keyframe PNG upscaled, in GIF and
MP4, forward and ping-pong; a server without the upscaler refuses before any model runs."""

import dataclasses

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image

from animate import WeightsError, animate
from animate.frames.host import to_uint8
from animate.frames.upscale import upscale_batch
from animate.progress import STAGES
from tests.animate.test_pipeline import Recorder, gif_frame_count, gif_frames, settings


def mp4_frames_and_size(path):
    """(frame count, (width, height)) of an MP4, decoded with imageio-ffmpeg."""
    reader = imageio_ffmpeg.read_frames(str(path))
    size = next(reader)["size"]
    return sum(1 for _ in reader), size


@pytest.mark.parametrize("upscale, factor", [("4x", 4), ("2x", 2)])
def test_every_frame_and_keyframe_png_of_a_gif_is_upscaled(components, tmp_path, capsys, upscale, factor):
    progress = Recorder()
    walk = settings(upscale=upscale, intermediate_output=True)  # K = 3 keyframes, F = 7 frames of 64x64
    outputs = list(animate(components, walk, tmp_path, progress=progress))

    assert [path.name for path in outputs] == ["keyframe-000.png", "keyframe-001.png", "keyframe-002.png", "animation.gif"]
    side = 64 * factor
    keyframes = torch.cat([images for _, _, images, _ in progress.batches])
    expected = upscale_batch(components.upscaler, keyframes, factor, 1 << 30)
    for index, path in enumerate(outputs[:-1]):
        picture = np.asarray(Image.open(path))
        assert picture.shape == (side, side, 3)
        assert np.array_equal(picture, (expected[index] * 255).round().permute(1, 2, 0).byte().numpy())
    with Image.open(outputs[-1]) as gif:
        assert gif.size == (side, side) and gif.n_frames == 7
    # The first frame is the first keyframe upscaled (as near as the GIF's 256 colours and
    # dithering get), not the keyframe merely enlarged.
    first_frame = gif_frames(outputs[-1])[0]
    upscaled = np.asarray(Image.open(outputs[0]), dtype=float)
    enlarged = np.asarray(Image.fromarray(to_uint8(keyframes[0])).resize((side, side), Image.NEAREST), dtype=float)
    assert np.abs(first_frame - upscaled).mean() < np.abs(first_frame - enlarged).mean()
    assert set(progress.seconds) == set(STAGES)  # upscaling included
    assert f"] upscaling: {upscale} to {side}x{side}, 64 frames per call\n" in capsys.readouterr().out


def test_an_upscaled_mp4_played_ping_pong_has_every_frame_at_the_upscaled_size(components, tmp_path):
    walk = settings(upscale="2x", output_format="mp4", film_interpolation=False, gif_ping_pong=True)
    [mp4] = list(animate(components, walk, tmp_path))
    assert mp4_frames_and_size(mp4) == (2 * 7 - 2, (128, 128))


def test_an_upscaled_gif_played_ping_pong_has_2f_minus_2_frames(components, tmp_path):
    walk = settings(upscale="4x", gif_ping_pong=True, num_interpolation_steps=2)  # F = 5
    [gif] = list(animate(components, walk, tmp_path))
    assert gif_frame_count(gif) == 2 * 5 - 2
    frames = gif_frames(gif)
    assert frames[0].shape == (256, 256, 3)
    assert np.array_equal(frames[3], frames[5]) and np.array_equal(frames[1], frames[7])  # played back


def test_upscaling_without_the_upscaler_fails_before_any_model_runs(components, tmp_path):
    without = dataclasses.replace(components, upscaler=None)
    calls = []
    hook = components.unet.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        with pytest.raises(WeightsError, match=r"^upscale=4x needs the upscaler weights"):
            list(animate(without, settings(upscale="4x"), tmp_path / "out"))
        assert calls == [] and list((tmp_path / "out").iterdir()) == []
        outputs = list(animate(without, settings(), tmp_path / "plain"))  # the rest still works
    finally:
        hook.remove()
    assert [path.name for path in outputs] == ["animation.gif"] and calls
