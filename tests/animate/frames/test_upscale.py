"""Upscaling frames (animate.frames.upscale) with the tiny upscaler, loaded through spandrel
as the real one is: what spandrel's own call gives, 2x from 4x, tiles, the stream of frames."""

import pytest
import torch
import torch.nn.functional as F

from animate.frames.upscale import TILE_OVERLAP, spans, tile_side, upscale_batch, upscaled_frames
from animate.memory import StageBatches
from animate.progress import Progress
from animate.weights import spandrel
from tests.animate.test_pipeline import StepRecorder

# Tiled against untiled in float32: the tiles' kept parts see everything the whole frame's
# call sees, so only the order of float sums may differ.
TILE_TOLERANCE = 1e-5
PLENTY = 1 << 30  # input pixels per call: every frame in one call


@pytest.fixture(scope="module")
def upscaler(components):
    return components.upscaler


def pictures(count: int, height: int = 40, width: int = 56, seed: int = 0) -> torch.Tensor:
    """Random pictures (count, 3, height, width) in [0, 1]."""
    return torch.rand(count, 3, height, width, generator=torch.Generator().manual_seed(seed))


def test_the_tiny_upscaler_is_real_esrgans_compact_architecture_at_4x(upscaler):
    assert isinstance(upscaler, spandrel.ImageModelDescriptor)
    assert upscaler.architecture.name == "RealESRGAN Compact"
    assert (upscaler.scale, upscaler.input_channels, upscaler.output_channels) == (4, 3, 3)
    assert upscaler.dtype == torch.float32 and upscaler.device == torch.device("cpu")


def test_an_upscaled_frame_is_spandrels_own_call_on_it(upscaler):
    frame = pictures(1)
    upscaled = upscale_batch(upscaler, frame, 4, PLENTY)
    assert upscaled.shape == (1, 3, 160, 224)
    assert torch.equal(upscaled, upscaler(frame.clone()))
    # Not the picture scaled by repeating pixels: the model adds its detail.
    assert (upscaled - F.interpolate(frame, scale_factor=4, mode="nearest")).abs().max() > 0.01


def test_frames_upscaled_together_are_each_frames_own_call(upscaler):
    frames = pictures(3)
    together = upscale_batch(upscaler, frames, 4, PLENTY)
    for frame, upscaled in zip(frames, together):
        torch.testing.assert_close(upscaled[None], upscaler(frame[None].clone()), atol=1e-6, rtol=0)


def test_2x_is_the_4x_frame_with_each_2x2_block_averaged(upscaler):
    frames = pictures(2)
    twice = upscale_batch(upscaler, frames, 2, PLENTY)
    assert twice.shape == (2, 3, 80, 112)
    assert torch.equal(twice, F.avg_pool2d(upscale_batch(upscaler, frames, 4, PLENTY), 2))
    assert 0 <= twice.min() and twice.max() <= 1


def test_tiles_cover_the_frame_and_keep_their_overlap_inside_the_budget():
    assert spans(100, 32) == [(0, 32), (32, 64), (64, 96), (96, 100)]
    budget = (48 + 2 * TILE_OVERLAP) ** 2
    assert tile_side(budget) == 48
    assert tile_side(10) == 32  # never smaller than MIN_TILE, however small the budget


@pytest.mark.parametrize("factor", [4, 2])
def test_a_frame_over_the_budget_is_upscaled_in_tiles_as_if_whole(upscaler, factor):
    frames = pictures(2, height=150, width=110, seed=1)
    budget = (40 + 2 * TILE_OVERLAP) ** 2  # tiles of 40x40: 4 x 3 per frame
    calls = []
    handle = upscaler.model.register_forward_pre_hook(lambda module, args: calls.append(tuple(args[0].shape)))
    try:
        tiled = upscale_batch(upscaler, frames, factor, budget)
    finally:
        handle.remove()
    assert len(calls) == 2 * 4 * 3
    assert all(batch * height * width <= budget for batch, _, height, width in calls)
    whole = upscale_batch(upscaler, frames, factor, PLENTY)
    assert tiled.shape == whole.shape == (2, 3, 150 * factor, 110 * factor)
    assert (tiled - whole).abs().max() <= TILE_TOLERANCE


def test_the_tile_overlap_covers_what_realesr_general_x4v3_sees():
    """Its architecture (32 body convolutions, here with 4 features instead of 64): the
    input pixels one output pixel depends on reach exactly TILE_OVERLAP from it."""
    torch.manual_seed(0)
    model = spandrel.architectures.Compact.Compact(num_feat=4, num_conv=32, upscale=4).eval()
    image = torch.rand(1, 3, 96, 96, requires_grad=True)
    model(image)[0, :, 4 * 48, 4 * 48].sum().backward()
    rows, columns = torch.nonzero(image.grad[0].abs().sum(0), as_tuple=True)
    reach = max((rows - 48).abs().max(), (columns - 48).abs().max()).item()
    assert reach == TILE_OVERLAP


def test_the_stream_upscales_frames_in_order_in_batches_that_fit(upscaler, capsys):
    frames = pictures(7, height=16, width=16, seed=2)
    made = []

    def making():  # the in-betweens, made one by one as the stream asks for them
        for frame in frames:
            made.append(frame)
            yield frame

    progress = StepRecorder()
    budget = 3 * 16 * 16  # three frames per call
    stream = upscaled_frames(upscaler, making(), 7, 2, StageBatches("upscale", budget), progress)
    first = next(stream)
    assert len(made) == 3  # one batch was made before the first frame came out
    upscaled = [first, *stream]
    assert len(upscaled) == 7
    for frame, result in zip(frames, upscaled):
        torch.testing.assert_close(result[None], upscale_batch(upscaler, frame[None], 2, budget), atol=1e-6, rtol=0)
    # A step before each batch (a place to stop) and after each frame.
    assert progress.steps == [("upscale", done) for done in (0, 1, 2, 3, 3, 4, 5, 6, 6, 7)]
    assert "] upscaling: 7/7 frames (2x)\n" in capsys.readouterr().out
    assert progress.seconds["upscale"] > 0


def test_a_stop_before_a_batch_leaves_the_rest_unmade(upscaler):
    class StopAtThree(Progress):
        def step(self, name, done, total, detail=""):
            if done == 3:
                raise KeyboardInterrupt

    made = []

    def making():
        for frame in pictures(7, height=16, width=16):
            made.append(frame)
            yield frame

    stream = upscaled_frames(upscaler, making(), 7, 4, StageBatches("upscale", 3 * 16 * 16), StopAtThree())
    with pytest.raises(KeyboardInterrupt):
        list(stream)
    assert len(made) == 3
