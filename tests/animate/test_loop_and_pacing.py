"""`loop` and `pacing` through animate() (docs/behaviour.md, "Loop", "Pacing", "Frame arithmetic").

Frame counts and seams run on the tiny weights. How even the pacing is shows on a walk
whose answer is known: a KnownWalk draws each keyframe as a fixed function of its place on
the walk instead of the UNet and VAE (animate's `render` seam), and FILM is replaced by the
average of its two frames, so an in-between moves linearly from one keyframe to the next.
"""

import dataclasses
import hashlib
import re

import numpy as np
import pytest
import torch
from PIL import Image

from animate import InputError, animate, settings_from_inputs
from animate.frames.pacing import ChangeMeter, Unevenness, picture_changes
from animate.inputs.settings import INPUT_DEFAULTS
from animate.progress import Progress
from tests.animate.test_pipeline import gif_frame_count

SIZE = 64


def walk(**overrides):
    """A small request (64x64, 4 steps, 2 prompts, N = 3, S = 2) with `overrides`."""
    values = dict(
        INPUT_DEFAULTS, prompt_start="a red house", prompt_end="a blue boat", width=SIZE, height=SIZE,
        num_inference_steps=4, num_animation_frames=3, num_interpolation_steps=2, seed=42,
    )
    values.update(overrides)
    return settings_from_inputs(**values)


class AveragingFilm(torch.nn.Module):
    """FILM's stand-in: the midpoint of two frames is their average."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))  # FILM's device and dtype are read from it

    def forward(self, x0, x1):
        return (x0 + x1) / 2


def jump(position):
    """A picture weight that changes slowly on [0, 0.4] (10% of its change), jumps on
    [0.4, 0.6] (80%) and changes slowly again after (10%): piecewise linear in the walk position."""
    return float(np.interp(position, [0.0, 0.4, 0.6, 1.0], [0.0, 0.1, 0.9, 1.0]))


class KnownWalk:
    """Renders the keyframe at (segment, t) as a fixed picture of that place, in batches of
    4, and records the places it is asked for. By default the picture is a blend of two
    random pictures by jump(walk position); with `prompt_pictures` it is the blend of the
    segment's two prompts' pictures by t (a loop's closing segment ends on the first)."""

    def __init__(self, num_prompts, prompt_pictures=False, weight=jump):
        generator = torch.Generator().manual_seed(0)
        count = num_prompts if prompt_pictures else 2
        self.pictures = torch.rand(count, 3, SIZE, SIZE, generator=generator)
        self.num_prompts, self.prompt_pictures, self.weight = num_prompts, prompt_pictures, weight
        self.calls = []

    def picture(self, segment, t):
        if self.prompt_pictures:
            first, second = self.pictures[segment], self.pictures[(segment + 1) % self.num_prompts]
            return first + t * (second - first)
        first, second = self.pictures
        return first + self.weight((segment + t) / (self.num_prompts - 1)) * (second - first)

    def __call__(self, places):
        self.calls.append(list(places))
        for start in range(0, len(places), 4):
            images = torch.stack([self.picture(*place) for place in places[start : start + 4]])
            yield torch.zeros(images.shape[0], 4, SIZE // 8, SIZE // 8), images


class Measured(Progress):
    """Measures the change between the animation's frames (animate.frames.pacing) and
    records the keyframe runs reported, logging as the base class."""

    def __init__(self):
        super().__init__()
        self.meter = ChangeMeter()
        self.runs = []
        self.first_and_last = []  # the animation's first and last frame, as made

    def frames_made(self, pictures):
        self.meter.add(pictures)
        self.first_and_last = [(self.first_and_last or pictures)[0], pictures[-1]]

    def keyframes_decoded(self, start, latents, images, total):
        super().keyframes_decoded(start, latents, images, total)
        self.runs.append((start, images.clone(), total))

    @property
    def unevenness(self):
        return Unevenness.of(self.meter.changes)


@pytest.fixture
def averaging(components):
    return dataclasses.replace(components, film=AveragingFilm())


# loop


@pytest.mark.parametrize("film", [True, False], ids=["film", "latent"])
@pytest.mark.parametrize("prompt_end", ["a blue boat", "a blue boat | a tree", "a boat | a tree | a cow | a fox"])
def test_a_loop_has_p_times_n_minus_1_keyframes_and_k_times_s_frames(components, tmp_path, capsys, prompt_end, film):
    request = walk(prompt_end=prompt_end, loop=True, film_interpolation=film, intermediate_output=True)
    prompts = len(request.prompts)  # 2, 3 and 5
    keyframes, frames = prompts * (3 - 1), prompts * (3 - 1) * 2
    outputs = list(animate(components, request, tmp_path))
    assert [path.name for path in outputs] == [f"keyframe-{k:03d}.png" for k in range(keyframes)] + ["animation.gif"]
    assert gif_frame_count(outputs[-1]) == frames
    log = capsys.readouterr().out
    assert f"] Walk over {prompts} prompts and back to the first: {keyframes} keyframes, {frames} frames, " \
           f"{frames} in the animation\n" in log


def test_a_loops_first_keyframes_are_those_of_the_walk_without_loop(components, tmp_path):
    def pngs(name, **changes):
        outputs = animate(components, walk(prompt_end="a blue boat | a tree", intermediate_output=True, **changes),
                          tmp_path / name)
        return [np.asarray(Image.open(path), dtype=float) for path in outputs if path.suffix == ".png"]

    open_walk, loop = pngs("open"), pngs("loop", loop=True)
    assert (len(open_walk), len(loop)) == (5, 6)
    # The first batch of 4 is the same batch: the same bytes. The last prompt's keyframe
    # comes from another batch (of 2, not 1), which changes the float rounding only.
    assert all(np.array_equal(a, b) for a, b in zip(open_walk[:4], loop[:4]))
    assert np.abs(open_walk[4] - loop[4]).max() <= 1
    assert np.abs(loop[5] - loop[4]).mean() > 1  # the closing segment goes on, back towards the first prompt


@pytest.mark.parametrize("prompts", [2, 3])
def test_a_loop_has_no_seam(averaging, tmp_path, prompts):
    """With pictures that blend linearly between the prompts, every step of a segment
    changes the picture alike, including the step from the last frame back to the first."""
    prompt_end = " | ".join(["a blue boat", "a tree"][: prompts - 1])
    known = KnownWalk(prompts, prompt_pictures=True)
    progress = Measured()
    request = walk(prompt_end=prompt_end, loop=True, num_animation_frames=4, num_interpolation_steps=3)
    outputs = list(animate(averaging, request, tmp_path, progress=progress, render=known))
    assert gif_frame_count(outputs[-1]) == prompts * 3 * 3
    # The frames as made, and the step back from the last to the first.
    first, last = progress.first_and_last
    changes = progress.meter.changes + ChangeMeter().add_all([last, first]).changes
    per_segment = np.array(changes).reshape(prompts, 9)
    for segment in per_segment:
        assert segment.max() - segment.min() <= 1.0, segment  # uint8 rounding only
    assert min(changes) > 1  # no frame is shown twice, at the seam or anywhere


def test_loop_with_ping_pong_fails_in_one_sentence_before_any_model_runs():
    with pytest.raises(InputError) as caught:
        walk(loop=True, gif_ping_pong=True)
    message = str(caught.value)
    assert message.startswith("loop and gif_ping_pong cannot both be true")
    assert message.endswith(".") and ". " not in message


# pacing


def uneven(components, tmp_path, pacing, known, **changes):
    """(Unevenness of the animation's frames, the Measured progress) of a KnownWalk."""
    progress = Measured()
    request = walk(**{"num_animation_frames": 10, "num_interpolation_steps": 5, "pacing": pacing, **changes})
    list(animate(components, request, tmp_path / pacing, progress=progress, render=known))
    return progress.unevenness, progress


@pytest.mark.parametrize(
    "changes, prompts",
    [({}, 2), (dict(num_animation_frames=25), 2), (dict(prompt_end="a blue boat | a tree"), 3),
     (dict(num_animation_frames=6, num_interpolation_steps=8), 2)],
    ids=["defaults", "25-keyframes", "3-prompts", "N6-S8"],
)
def test_even_pacing_evens_out_a_walk_that_jumps(averaging, tmp_path, changes, prompts):
    linear, _ = uneven(averaging, tmp_path, "linear", KnownWalk(prompts), **changes)
    even, progress = uneven(averaging, tmp_path, "even", KnownWalk(prompts), **changes)
    assert linear.cv >= 0.5
    assert even.cv <= 0.15 and even.largest_jump <= 1.5, even
    linear_frames = walk(**{"num_animation_frames": 10, "num_interpolation_steps": 5, **changes})
    assert len(progress.meter.changes) + 1 == (len(linear_frames.prompts) - 1) * (linear_frames.num_animation_frames - 1) * linear_frames.num_interpolation_steps + 1


def test_even_pacing_renders_each_keyframe_once_in_two_rounds(averaging, tmp_path, capsys):
    known = KnownWalk(2)
    _, progress = uneven(averaging, tmp_path, "even", known)
    first, second = known.calls
    assert first == [(0, 0.0), (0, 1 / 3), (0, 2 / 3), (0, 1.0)]  # N - 1 = 9: 3 gaps first
    assert len(second) == 6 and not set(first) & set(second)
    assert all(1 / 3 < t < 2 / 3 for _, t in second)  # all in the gap where the picture jumps
    # Reported in walk order: first the keyframes up to the jump, then the rest as rendered.
    assert [start for start, _, _ in progress.runs][0] == 0
    assert sum(len(images) for _, images, _ in progress.runs) == 10
    places = sorted(first + second)
    keyframes = torch.cat([images for _, images, _ in progress.runs])
    assert torch.equal(keyframes, torch.stack([known.picture(*place) for place in places]))
    log = capsys.readouterr().out
    assert "] pacing: even: 4 keyframes evenly first, then 6 more where the picture changes most\n" in log
    assert re.search(r"\] pacing: even: 45 frames shared out by change, 1 to \d+ per gap\n", log)


def test_even_pacing_writes_keyframe_pngs_in_walk_order(averaging, tmp_path):
    known = KnownWalk(2)
    request = walk(pacing="even", num_animation_frames=10, intermediate_output=True)
    outputs = list(animate(averaging, request, tmp_path, render=known))
    assert [path.name for path in outputs] == [f"keyframe-{k:03d}.png" for k in range(10)] + ["animation.gif"]
    places = sorted(known.calls[0] + known.calls[1])
    for path, place in zip(outputs, places):
        expected = (known.picture(*place) * 255).round().permute(1, 2, 0).byte().numpy()
        assert np.array_equal(np.asarray(Image.open(path)), expected)


def test_even_pacing_measures_keyframes_with_the_projects_measure():
    """d of two pictures: the RMS of their 0-255 difference at a long side of 128 px, box-filtered."""
    flat = torch.zeros(2, 3, 256, 512)
    flat[1] += 0.5
    assert picture_changes(flat) == [pytest.approx(127.5)]
    stripes = torch.zeros(2, 3, 256, 512)
    stripes[1, :, :, 1::2] = 1.0  # one-pixel stripes average out to grey at 128 px
    assert picture_changes(stripes) == [pytest.approx(127.5)]
    assert picture_changes(flat, closed=True) == [pytest.approx(127.5)] * 2
    assert Unevenness.of([1.0, 1.0, 1.0]) == Unevenness(0.0, 1.0)
    assert Unevenness.of([1.0, 3.0]).cv == pytest.approx(0.5)
    assert Unevenness.of([0.0, 0.0]) == Unevenness(0.0, 0.0)


def test_even_pacing_keeps_the_unet_budget_of_the_default_request(components, tmp_path):
    """The default request's keyframes and steps (64x64 and S = 1 to be quick): even
    pacing renders the same keyframes' worth, at most 1.1 times linear's UNet samples."""
    samples = {}
    for pacing in ("linear", "even"):
        counted = []
        hook = components.unet.register_forward_pre_hook(lambda module, args: counted.append(args[0].shape[0]))
        try:
            request = walk(pacing=pacing, num_animation_frames=10, num_inference_steps=50, num_interpolation_steps=1)
            list(animate(components, request, tmp_path / pacing))
        finally:
            hook.remove()
        samples[pacing] = sum(counted)
    assert samples["linear"] == 2 * 9 + 10 * 2 * 42 - 9  # PNDM: 51 calls, 9 shared; one shared uncond half
    assert samples["linear"] < samples["even"] <= 1.1 * samples["linear"]


@pytest.mark.parametrize(
    "changes",
    [dict(film_interpolation=False, seed=1), dict(film_interpolation=False, seed=3),
     dict(film_interpolation=False, prompt_end="a blue boat | a tree", num_animation_frames=4), dict(seed=1)],
    ids=["latent-1", "latent-3", "latent-3-prompts", "film-1"],
)
def test_even_pacing_never_makes_the_tiny_weights_walk_less_even(components, tmp_path, changes):
    """The tiny weights' pictures change about evenly along the walk already; even pacing
    keeps them at least as even (to within float rounding: its keyframes are batched
    differently)."""
    measured = {}
    for pacing in ("linear", "even"):
        progress = Measured()
        request = walk(**{"num_animation_frames": 10, "num_interpolation_steps": 5, "pacing": pacing, **changes})
        list(animate(components, request, tmp_path / pacing, progress=progress))
        measured[pacing] = progress.unevenness.cv
    assert measured["even"] <= measured["linear"] + 0.002, measured


def test_even_pacing_gives_the_same_bytes_for_the_same_seed(components, tmp_path):
    def digest(name, seed):
        request = walk(pacing="even", num_animation_frames=5, film_interpolation=False, seed=seed, output_format="mp4")
        return hashlib.sha256(list(animate(components, request, tmp_path / name))[-1].read_bytes()).hexdigest()

    first = digest("a", 42)
    assert digest("b", 42) == first and digest("c", 43) != first


def test_even_pacing_with_a_loop_shares_the_closing_gap_too(averaging, tmp_path):
    known = KnownWalk(2, prompt_pictures=True)
    progress = Measured()
    request = walk(pacing="even", loop=True, num_animation_frames=5, num_interpolation_steps=3)
    outputs = list(animate(averaging, request, tmp_path, progress=progress, render=known))
    assert gif_frame_count(outputs[-1]) == 2 * 4 * 3
    assert progress.unevenness.cv <= 0.15
