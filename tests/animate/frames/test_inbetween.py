import pytest
import torch

from animate.diffusion.vae import decode_latents
from animate.frames.inbetween import film_frames, inbetween_times, latent_frames
from animate.memory import CPU_DECODE_BATCH, FILM_CPU_BATCH, WHOLE, StageBatches
from animate.progress import Progress
from animate.slerp import slerp


def keyframes(count, size=64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(count, 4, size // 8, size // 8, generator=generator) * 5
    return latents


def test_inbetween_times_are_j_over_s_per_gap():
    assert inbetween_times([4, 4]) == [(0, 0.25), (0, 0.5), (0, 0.75), (1, 0.25), (1, 0.5), (1, 0.75)]
    assert inbetween_times([1] * 4) == []
    assert inbetween_times([2, 1, 3]) == [(0, 0.5), (2, 1 / 3), (2, 2 / 3)]


@torch.inference_mode()
def test_latent_inbetweens_are_decoded_slerps_and_keyframes_are_reused(components):
    latents = keyframes(3)
    images = decode_latents(components.vae, latents, StageBatches("decode", CPU_DECODE_BATCH))
    steps = 3
    frames = list(latent_frames(components.vae, latents, images, [steps] * 2, StageBatches("in-betweens", 2)))
    assert len(frames) == (3 - 1) * steps + 1
    for k in range(3):
        assert torch.equal(frames[k * steps], images[k])  # not rendered again
    expected = decode_latents(components.vae, slerp(torch.tensor([1 / 3]), latents[1:2], latents[2:3]), StageBatches("decode", 1))[0]
    torch.testing.assert_close(frames[4], expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(frames[4], frames[3], atol=1e-3)
    one_batch = list(latent_frames(components.vae, latents, images, [steps] * 2, StageBatches("in-betweens", WHOLE)))
    for a, b in zip(frames, one_batch):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@torch.inference_mode()
def test_latent_path_with_one_step_is_the_keyframes(components):
    latents = keyframes(2)
    images = decode_latents(components.vae, latents, StageBatches("decode", CPU_DECODE_BATCH))
    frames = list(latent_frames(components.vae, latents, images, [1], StageBatches("in-betweens", 2)))
    assert len(frames) == 2 and torch.equal(frames[0], images[0]) and torch.equal(frames[1], images[1])


@torch.inference_mode()
def test_film_path_gives_every_frame_through_film_net(components):
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    steps = 4
    frames = list(film_frames(components.film, images, [steps] * 2, Progress(), StageBatches("FILM", FILM_CPU_BATCH)))
    assert len(frames) == (3 - 1) * steps + 1
    for k in range(3):
        torch.testing.assert_close(frames[k * steps], images[k], rtol=0, atol=0)
    middle = components.film(images[:1], images[1:2])[0].clamp(0, 1)
    torch.testing.assert_close(frames[2], middle, rtol=1e-4, atol=1e-5)  # S=4: j=2 is FILM's midpoint
    assert all(frame.shape == (3, 64, 64) for frame in frames)
    assert [torch.equal(a, b) for a, b in zip(film_frames(None, images, [1, 1], Progress(), StageBatches("FILM", FILM_CPU_BATCH)), images)] == [True] * 3


@torch.inference_mode()
def test_latent_frames_follow_each_gaps_count_and_a_loop_closes_back_to_the_first(components):
    latents = keyframes(3)
    images = decode_latents(components.vae, latents, StageBatches("decode", CPU_DECODE_BATCH))
    gap_frames = [1, 3, 2]  # a loop: the last gap goes from keyframe 2 back to keyframe 0
    frames = list(latent_frames(components.vae, latents, images, gap_frames, StageBatches("in-betweens", 2)))
    assert len(frames) == 6  # no last keyframe: the frame after the last is the first
    for k, index in enumerate([0, 1, 4]):
        assert torch.equal(frames[index], images[k])
    closing = decode_latents(components.vae, slerp(torch.tensor([0.5]), latents[2:3], latents[0:1]), StageBatches("decode", 1))[0]
    torch.testing.assert_close(frames[5], closing, rtol=1e-4, atol=1e-5)
    open_walk = list(latent_frames(components.vae, latents, images, [1, 3], StageBatches("in-betweens", 2)))
    assert len(open_walk) == 5 and torch.equal(open_walk[-1], images[2])


@torch.inference_mode()
def test_film_frames_follow_each_gaps_count_and_a_loop_closes_back_to_the_first(components):
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    frames = list(film_frames(components.film, images, [2, 1, 4], Progress(), StageBatches("FILM", FILM_CPU_BATCH)))
    assert len(frames) == 7
    for k, index in enumerate([0, 2, 3]):
        torch.testing.assert_close(frames[index], images[k], rtol=0, atol=0)
    middle = components.film(images[:1], images[1:2])[0].clamp(0, 1)
    torch.testing.assert_close(frames[1], middle, rtol=1e-4, atol=1e-5)
    closing = components.film(images[2:3], images[0:1])[0].clamp(0, 1)
    torch.testing.assert_close(frames[5], closing, rtol=1e-4, atol=1e-5)  # time 2/4 of keyframe 2 -> 0
    assert len(list(film_frames(components.film, images, [2, 1], Progress(), StageBatches("FILM", FILM_CPU_BATCH)))) == 4


def test_gaps_must_be_k_minus_1_or_k(components):
    images = torch.rand(3, 3, 64, 64)
    with pytest.raises(ValueError, match="3 keyframes have 2 gaps, or 3 as a loop, not 4"):
        next(film_frames(components.film, images, [1, 1, 1, 1], Progress(), StageBatches("FILM", FILM_CPU_BATCH)))
