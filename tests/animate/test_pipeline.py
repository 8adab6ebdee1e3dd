import dataclasses
import hashlib
import re

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image

from animate import KeyframePlan, animate, settings_from_inputs
from animate.pipeline import keyframe_embeddings, walk_embedding
from animate.safety import UnsafeContentError
from animate.text import encode_prompts


def settings(**overrides):
    values = dict(
        prompt_start="a red house",
        prompt_end="a blue boat | a green tree",
        width=64,
        height=64,
        num_inference_steps=4,
        prompt_strength=0.8,
        num_animation_frames=2,
        num_interpolation_steps=3,
        guidance_scale=7.5,
        gif_frames_per_second=10,
        gif_ping_pong=False,
        film_interpolation=True,
        intermediate_output=False,
        seed=42,
        output_format="gif",
    )
    values.update(overrides)
    return settings_from_inputs(**values)


def gif_frame_count(path):
    with Image.open(path) as image:
        return image.n_frames


def gif_frames(path):
    with Image.open(path) as image:
        frames = []
        for index in range(image.n_frames):
            image.seek(index)
            frames.append(np.asarray(image.convert("RGB"), dtype=float))
        return frames


def test_gif_with_film_and_keyframe_pngs_in_order(components, tmp_path, capsys):
    walk = settings(intermediate_output=True)  # 3 prompts, 2 per segment: K = 3, F = 7
    outputs = list(animate(components, walk, tmp_path))
    names = [path.name for path in outputs]
    assert names == ["keyframe-000.png", "keyframe-001.png", "keyframe-002.png", "animation.gif"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)  # no partial or spool files
    assert gif_frame_count(outputs[-1]) == 7
    keyframe_pngs = [np.asarray(Image.open(path), dtype=float) for path in outputs[:3]]
    assert all(png.shape == (64, 64, 3) for png in keyframe_pngs)
    assert np.abs(keyframe_pngs[0] - keyframe_pngs[2]).mean() > 2  # different prompts, visibly
    frames = gif_frames(outputs[-1])
    for k, png in enumerate(keyframe_pngs):  # keyframes sit every S frames (palette-quantized)
        assert np.abs(frames[3 * k] - png).mean() < 12
    log = capsys.readouterr().out
    assert "Using seed: 42" in log
    assert re.search(r"keyframes 1-3 of 3: step \d+/\d+", log)
    for stage in ("text encoding took", "shared start took", "keyframes (denoise, decode, safety check) took",
                  "in-betweens (FILM) took", "encoding took"):
        assert stage in log
    assert "frames interpolated: 7/7" in log


def test_mp4_with_latent_inbetweens_and_ping_pong(components, tmp_path):
    walk = settings(output_format="mp4", film_interpolation=False, gif_ping_pong=True, gif_frames_per_second=12)
    outputs = list(animate(components, walk, tmp_path))
    assert [path.name for path in outputs] == ["animation.mp4"]
    frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(outputs[0]))
    plan = KeyframePlan(3, 2, 3, ping_pong=True)
    assert frames == plan.num_output_frames == 2 * 7 - 2
    assert seconds == pytest.approx(frames / 12, abs=0.01)


def test_ping_pong_gif_plays_back(components, tmp_path):
    outputs = list(animate(components, settings(gif_ping_pong=True, num_interpolation_steps=2), tmp_path))
    frames = gif_frames(outputs[-1])
    assert len(frames) == 2 * 5 - 2
    for forward, backward in [(1, 7), (2, 6), (3, 5)]:
        assert np.array_equal(frames[forward], frames[backward])


@pytest.mark.parametrize("fmt", ["gif", "mp4"])
def test_same_seed_gives_byte_identical_files(components, tmp_path, fmt):
    def run(name, seed):
        path = list(animate(components, settings(output_format=fmt, seed=seed), tmp_path / name))[-1]
        return hashlib.sha256(path.read_bytes()).hexdigest()

    first = run("a", 42)
    assert run("b", 42) == first
    assert run("c", 43) != first


def test_first_and_last_keyframes_are_the_end_prompts_exactly(components):
    plan = KeyframePlan(3, 4, 1)
    embeddings, _ = encode_prompts(components.tokenizer, components.text_encoder, ["a", "b", "c"])
    per_keyframe = keyframe_embeddings(plan, embeddings)
    assert per_keyframe.shape[0] == plan.num_keyframes == 7
    assert torch.equal(per_keyframe[0], embeddings[0])
    assert torch.equal(per_keyframe[3], embeddings[1])  # shared end of the two segments
    assert torch.equal(per_keyframe[-1], embeddings[2])
    assert torch.equal(walk_embedding(plan, embeddings, 0.5)[0], embeddings[1])


def test_flagged_keyframe_fails_the_walk_before_anything_is_written(components, tmp_path, make_safety_checker):
    checker, processor = make_safety_checker(threshold=-2.0)  # flags every image
    guarded = dataclasses.replace(components, safety_checker=checker, feature_extractor=processor)
    outputs = []
    with pytest.raises(UnsafeContentError, match="Keyframe 1 of 3"):
        for path in animate(guarded, settings(intermediate_output=True), tmp_path):
            outputs.append(path)
    assert outputs == [] and list(tmp_path.iterdir()) == []


def test_cancel_check_stops_within_a_step(components, tmp_path):
    class Canceled(BaseException):
        pass

    calls = []

    def cancel_after_three():
        calls.append(1)
        if len(calls) == 3:
            raise Canceled()

    with pytest.raises(Canceled):
        list(animate(components, settings(), tmp_path, cancel_check=cancel_after_three))
    assert len(calls) == 3
    assert list(tmp_path.iterdir()) == []
