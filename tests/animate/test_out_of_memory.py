"""Out-of-memory recovery (docs/memory.md, "Out of memory"): each batched stage halves a batch
that does not fit and does the same work again; a batch of one that does not fit ends the
walk in one sentence; a cancel during the retry still cancels.

The accelerator is faked through the walk's seam for it, Components.memory (FakeMemory):
it reports fixed usable bytes, so CPU batches are sized as on a GPU, and raises
torch.cuda.OutOfMemoryError for batches above a chosen size in a chosen stage.
"""

import dataclasses
import io
import re

import pytest
import torch
from PIL import Image

from animate import animate
from animate.frames.inbetween import film_frames
from animate.frames.upscale import upscale_images
from animate.memory import BATCHED_STAGES, GpuMemoryError, StageBatches
from animate.progress import Progress
from tests.animate.diffusion.test_diffusion import picture_file
from tests.animate.test_pipeline import Canceled, Recorder, settings
from tests.fake_memory import GIB, FakeMemory

# Batches sized as on a large GPU: every stage takes all its items at once (at most 16).
LARGE = 64 * GIB
# Float32 rounding of a UNet or FILM batch against smaller ones, as the batched =
# one-at-a-time tests allow (measured: at most 1.1e-5 for the UNet, 7e-8 for FILM).
TOLERANCE = dict(rtol=1e-4, atol=1e-4)


def walk(components, output_dir, memory, **overrides):
    """Run a small walk (3 prompts, 64x64, K = 5 keyframes, S = 3) on components with
    `memory` as its accelerator; returns (keyframe images (K, 3, H, W), {file name: bytes})."""
    progress = Recorder()
    faked = dataclasses.replace(components, memory=memory)
    walk_settings = settings(**{"num_animation_frames": 3, **overrides})
    paths = list(animate(faked, walk_settings, output_dir, progress=progress))
    keyframes = torch.cat([images for _, _, images, _ in progress.batches])
    return keyframes, {path.name: path.read_bytes() for path in paths}


def split_lines(log: str) -> list[str]:
    """The log lines that say a batch ran out of memory, without their timestamps."""
    return [line.split("] ", 1)[1] for line in log.splitlines() if "out of GPU memory" in line]


# (stage, inputs that make the stage run, its limit, the batch sizes it tries, the files are
# the same bytes: its model gives each sample the same result at any batch size on the CPU)
SPLITS = [
    ("text", {}, 1, [4, 2, 1, 1, 1, 1], True),  # 3 prompts and the negative prompt
    ("keyframes", {}, 2, [5, 2, 2, 1], False),
    ("decode", {}, 1, [5, 2, 1, 1, 1, 1, 1], True),
    ("in-betweens", dict(film_interpolation=False), 4, [8, 4, 4], True),  # 4 gaps of 2 in-betweens
    ("FILM", {}, 2, [4, 2, 2, 2, 2, 2, 2], False),  # depth 2: the 4 gaps' midpoints, then 8 quarters
]


@pytest.mark.parametrize("stage, inputs, limit, sizes, same_bytes", SPLITS, ids=[split[0] for split in SPLITS])
def test_a_batch_that_does_not_fit_is_halved_and_the_walk_gives_the_same_animation(
    components, tmp_path, capsys, stage, inputs, limit, sizes, same_bytes
):
    inputs = dict(inputs, intermediate_output=True, num_interpolation_steps=3 if stage != "FILM" else 4)
    expected_keyframes, expected_files = walk(components, tmp_path / "whole", FakeMemory(LARGE), **inputs)
    capsys.readouterr()
    memory = FakeMemory(LARGE, limits={stage: limit})
    keyframes, files = walk(components, tmp_path / "split", memory, **inputs)

    assert memory.sizes(stage) == sizes
    unit = BATCHED_STAGES[stage].units
    halvings = [size for size in dict.fromkeys(sizes) if size > limit]
    assert split_lines(capsys.readouterr().out) == [
        f"{stage}: out of GPU memory at {size} {unit} per batch; trying again at {size // 2}" for size in halvings
    ]
    assert memory.releases == len(halvings)
    assert files.keys() == expected_files.keys()
    torch.testing.assert_close(keyframes, expected_keyframes, **TOLERANCE)
    if same_bytes:
        assert files == expected_files


@torch.inference_mode()
def test_film_frames_after_a_split_are_the_frames_of_the_whole_batch(components):
    """FILM's float frames (the walk's GIF rounds them): what the batch of 4 would have given."""
    images = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    whole = list(film_frames(components.film, images, [4] * 4, Progress(), StageBatches("FILM", 4)))
    memory = FakeMemory(limits={"FILM": 2})
    split = list(film_frames(components.film, images, [4] * 4, Progress(), StageBatches("FILM", 4, memory)))
    assert memory.sizes("FILM") == [4, 2, 2, 2, 2, 2, 2]
    torch.testing.assert_close(torch.stack(split), torch.stack(whole), **TOLERANCE)


def test_the_text_encoders_of_sdxl_split_their_call_too(tmp_path, capsys):
    from animate.tiny import write_tiny_sdxl_weights
    from animate.weights import load_components

    sdxl = load_components(write_tiny_sdxl_weights(tmp_path / "tiny-sdxl"), "cpu", torch.float32)
    expected_keyframes, expected_files = walk(sdxl, tmp_path / "whole", FakeMemory(LARGE), negative_prompt="blurry")
    memory = FakeMemory(LARGE, limits={"text": 2})
    keyframes, files = walk(sdxl, tmp_path / "split", memory, negative_prompt="blurry")
    assert memory.sizes("text") == [4, 2, 2]
    assert "text: out of GPU memory at 4 prompts per batch; trying again at 2" in capsys.readouterr().out
    # SDXL's encoders round a batch of 2 a little differently from one of 4 (keyframes
    # measured 4.2e-6 apart), which can flip a pixel of the GIF: the keyframes are the test.
    assert files.keys() == expected_files.keys()
    torch.testing.assert_close(keyframes, expected_keyframes, **TOLERANCE)


@torch.inference_mode()
def test_the_upscaler_halves_its_input_pixels_down_to_one_frame_then_tiles(components):
    """upscale_images counts its batches in input pixels: 4 frames of 64x64 per call, then
    2; a 160x160 frame whole, then in tiles, down to the smallest tile call (32x32 tiles read
    with their 34-pixel overlap: 100x100 pixels). The frames are what one call gives."""
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    whole = upscale_images(components.upscaler, images, 2, StageBatches("upscale", 4 * 64 * 64))
    memory = FakeMemory(limits={"upscale": 2 * 64 * 64})
    split = upscale_images(components.upscaler, images, 2, StageBatches("upscale", 4 * 64 * 64, memory))
    assert memory.sizes("upscale") == [16_384, 8_192]
    torch.testing.assert_close(split, whole, **TOLERANCE)

    large = torch.rand(1, 3, 160, 160, generator=torch.Generator().manual_seed(4))
    whole = upscale_images(components.upscaler, large, 2, StageBatches("upscale", 160 * 160))
    memory = FakeMemory(limits={"upscale": 12_000})
    tiled = upscale_images(components.upscaler, large, 2, StageBatches("upscale", 160 * 160, memory))
    assert memory.sizes("upscale") == [25_600, 12_800, 10_000]
    torch.testing.assert_close(tiled, whole, **TOLERANCE)


def test_an_upscaled_walk_splits_its_upscaler_calls_and_keeps_the_smaller_size(components, tmp_path, capsys):
    """The walk's 13 frames of 64x64 go to the upscaler as one batch, at 2,097,152 input
    pixels per call (the most), which runs out of memory; halved down to two frames' worth,
    the same batch is upscaled again, two frames per call."""
    memory = FakeMemory(LARGE, limits={"upscale": 2 * 64 * 64})
    _, files = walk(components, tmp_path, memory, upscale="2x")
    halvings = [2_097_152 >> halved for halved in range(9)]  # ... 16,384 and 8,192
    assert memory.sizes("upscale") == halvings
    assert split_lines(capsys.readouterr().out) == [
        f"upscale: out of GPU memory at {size} input pixels per batch; trying again at {size // 2}"
        for size in halvings[:-1]
    ]
    with Image.open(io.BytesIO(files["animation.gif"])) as gif:
        assert (gif.n_frames, gif.size) == (13, (128, 128))


def test_an_upscaler_call_of_one_small_frame_that_does_not_fit_ends_the_walk_in_one_sentence(components, tmp_path):
    with pytest.raises(GpuMemoryError) as caught:
        walk(components, tmp_path / "out", FakeMemory(LARGE, limits={"upscale": 0}), upscale="2x")
    assert str(caught.value) == (
        "The GPU ran out of memory upscaling frames, even at 4,096 input pixels per batch: "
        "choose a smaller upscale, or lower width and height."
    )


def test_the_safety_check_splits_its_batch(components, tmp_path, make_safety_checker):
    checker, processor = make_safety_checker(threshold=2.0)  # flags nothing
    guarded = dataclasses.replace(components, safety_checker=checker, feature_extractor=processor)
    memory = FakeMemory(LARGE, limits={"safety check": 2})
    _, files = walk(guarded, tmp_path, memory)
    assert memory.sizes("safety check") == [5, 2, 2, 1]
    assert list(files) == ["animation.gif"]


def test_a_split_midway_keeps_the_smaller_batch_for_the_rest_of_the_walk(components, tmp_path, capsys):
    """CPU batches of 4 keyframes (K = 9): the first fits, the second does not."""
    expected_keyframes, _ = walk(components, tmp_path / "whole", FakeMemory(), num_animation_frames=5)
    capsys.readouterr()
    memory = FakeMemory(limits={"keyframes": 2}, from_call=2)
    keyframes, _ = walk(components, tmp_path / "split", memory, num_animation_frames=5)
    assert memory.sizes("keyframes") == [4, 4, 2, 2, 1]
    assert split_lines(capsys.readouterr().out) == ["keyframes: out of GPU memory at 4 keyframes per batch; trying again at 2"]
    torch.testing.assert_close(keyframes, expected_keyframes, **TOLERANCE)


class OutOfMemoryAtStep(Recorder):
    """Raises torch.cuda.OutOfMemoryError once, at the `at`-th denoising step of the
    keyframes: a batch that runs out of memory in the middle of its steps."""

    def __init__(self, at):
        super().__init__()
        self.steps_left = at

    def step(self, name, done, total, detail=""):
        super().step(name, done, total, detail)
        if name == "keyframe_denoise":
            self.steps_left -= 1
            if self.steps_left == 0:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (fake), in the middle of a batch")


def test_a_batch_that_runs_out_of_memory_midway_through_its_steps_starts_again_from_the_shared_start(
    components, tmp_path
):
    expected_keyframes, _ = walk(components, tmp_path / "whole", FakeMemory())
    progress = OutOfMemoryAtStep(at=3)  # the first batch of 4 (PNDM, 4 steps) fails after two steps
    list(animate(components, settings(num_animation_frames=3), tmp_path / "split", progress=progress))
    assert [(start, len(latents)) for start, latents, _, _ in progress.batches] == [(0, 2), (2, 2), (4, 1)]
    keyframes = torch.cat([images for _, _, images, _ in progress.batches])
    torch.testing.assert_close(keyframes, expected_keyframes, **TOLERANCE)


# (stage, inputs that make the stage run, the end of the sentence)
FAILURES = [
    ("text", {}, "encoding the prompts, even at one prompt per batch: use a checkpoint with smaller text encoders."),
    ("shared start", {}, "denoising the shared start, even at one keyframe per batch: lower width and height, "
     "or use a checkpoint that needs less memory."),
    ("init_image", dict(init_image="picture"), "encoding init_image, even at one picture per batch: "
     "lower width and height, or use a checkpoint that needs less memory."),
    ("keyframes", {}, "denoising keyframes, even at one keyframe per batch: lower width and height, "
     "or use a checkpoint that needs less memory."),
    ("decode", {}, "decoding keyframes, even at one keyframe per batch: lower width and height, "
     "or use a checkpoint that needs less memory."),
    ("in-betweens", dict(film_interpolation=False), "decoding in-betweens, even at one frame per batch: "
     "lower width and height, or use a checkpoint that needs less memory."),
    ("FILM", {}, "making in-betweens with FILM, even at one pair of frames per batch: lower width and height, "
     "or set film_interpolation to false."),
]


@pytest.mark.parametrize("stage, inputs, sentence", FAILURES, ids=[failure[0] for failure in FAILURES])
def test_a_batch_of_one_that_does_not_fit_ends_the_walk_in_one_sentence(components, tmp_path, stage, inputs, sentence):
    if inputs.get("init_image"):
        inputs = dict(inputs, init_image=picture_file(tmp_path / "start.png"))
    memory = FakeMemory(LARGE, limits={stage: 0})
    output_dir = tmp_path / "out"
    with pytest.raises(GpuMemoryError) as caught:
        walk(components, output_dir, memory, **inputs)
    assert str(caught.value) == f"The GPU ran out of memory {sentence}"
    assert caught.value.__cause__ is None and caught.value.__context__ is None  # no OutOfMemoryError behind it
    assert list(output_dir.iterdir()) == []  # no file half-written or left over


def test_the_safety_checks_batch_of_one_says_to_disable_it(components, tmp_path, make_safety_checker):
    checker, processor = make_safety_checker(threshold=2.0)
    guarded = dataclasses.replace(components, safety_checker=checker, feature_extractor=processor)
    with pytest.raises(GpuMemoryError, match=r"checking keyframes for safety, .*: set disable_safety_checker to true\.$"):
        walk(guarded, tmp_path, FakeMemory(LARGE, limits={"safety check": 0}))


class CancelAfterSplit(Recorder):
    """Raises Canceled (as the server cancels) at the first step after a split was logged."""

    def __init__(self):
        super().__init__()
        self.split = False

    def log(self, subject, detail):
        super().log(subject, detail)
        self.split = self.split or "out of GPU memory" in detail

    def step(self, name, done, total, detail=""):
        if self.split:
            raise Canceled()


def test_a_cancel_during_the_retry_cancels_and_the_next_walk_starts_from_its_own_estimate(
    components, tmp_path, capsys
):
    memory = FakeMemory(limits={"keyframes": 1})
    faked = dataclasses.replace(components, memory=memory)
    with pytest.raises(Canceled):
        list(animate(faked, settings(), tmp_path / "canceled", progress=CancelAfterSplit()))
    assert memory.sizes("keyframes") == [3, 1]  # CPU batches of 4; 3 keyframes: the retry at 1 was stopped
    assert list((tmp_path / "canceled").iterdir()) == []
    capsys.readouterr()

    # The next walk sizes its batches afresh (it does not remember the 1) and splits again.
    outputs = list(animate(faked, settings(), tmp_path / "next"))
    assert [path.name for path in outputs] == ["animation.gif"]
    log = capsys.readouterr().out
    assert re.search(r"\] keyframes: 3 keyframes, 4 per batch\n", log)
    assert memory.sizes("keyframes") == [3, 1, 3, 1, 1, 1]
    assert len(split_lines(log)) == 1
