import contextlib
import dataclasses
import hashlib
import re
from collections.abc import Iterator

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image

from animate import InputError, KeyframePlan, animate, settings_from_inputs
from animate.diffusion.safety import UnsafeContentError
from animate.diffusion.schedulers import SCHEDULER_NAMES
from animate.inputs.settings import INPUT_DEFAULTS
from animate.pipeline import keyframe_embeddings, walk_embedding
from animate.progress import STAGES, Progress
from animate.text.clip import encode_prompts

# The stages a walk without `upscale` enters: all but upscaling.
WALK_STAGES = set(STAGES) - {"upscale"}


def settings(**overrides):
    """The default request, made small, with `overrides`."""
    values = dict(
        INPUT_DEFAULTS,
        prompt_start="a red house",
        prompt_end="a blue boat | a green tree",
        width=64,
        height=64,
        num_inference_steps=4,
        num_animation_frames=2,
        num_interpolation_steps=3,
        gif_frames_per_second=10,
        seed=42,
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
    log = capsys.readouterr().out.splitlines()
    assert log[0] == "Using seed: 42"
    assert all(re.match(r"\[ {0,6}\d+\.\ds\] \S", line) for line in log[1:]), log  # "[   12.3s] ..."
    assert "] Walk over 3 prompts: 3 keyframes, 7 frames, 7 in the animation" in log[1]
    assert re.search(r"\] encoding took \d+\.\d s$", log[-1])
    assert any(line.endswith("] keyframes: step 4/4, keyframes 1-3 of 3") for line in log)
    assert any(line.endswith("] keyframes: 3/3 done") for line in log)
    assert any(line.endswith("] in-betweens: 7/7 frames (FILM)") for line in log)
    for stage in ("text", "shared start", "keyframes", "decode", "in-betweens", "encoding"):
        assert any(re.search(rf"\] {stage} took \d+\.\d s", line) for line in log), stage


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


def test_without_encoding_the_frames_are_made_and_no_animation_is_written(components, tmp_path):
    progress = Recorder()
    outputs = list(animate(components, settings(intermediate_output=True), tmp_path, progress=progress, encode=False))
    assert [path.name for path in outputs] == ["keyframe-000.png", "keyframe-001.png", "keyframe-002.png"]
    assert sorted(path.name for path in tmp_path.iterdir()) == [path.name for path in outputs]
    assert set(progress.seconds) == WALK_STAGES - {"encode"}  # every frame made, none encoded


def test_first_and_last_keyframes_are_the_end_prompts_exactly(components):
    plan = KeyframePlan(3, 4, 1)
    embeddings, _ = encode_prompts(components.tokenizer, components.text_encoder, ["a", "b", "c"])
    per_keyframe = keyframe_embeddings(plan.keyframe_times(), embeddings)
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


class Canceled(BaseException):
    pass


class CancelAt(Progress):
    """Records every step reported in `events`, and raises Canceled at the `at`-th of `stage`."""

    def __init__(self, stage, at, events):
        super().__init__()
        self.cancel_stage, self.steps_left, self.events = stage, at, events

    def step(self, name, done, total, detail=""):
        self.events.append((name, done))
        if name == self.cancel_stage:
            self.steps_left -= 1
            if self.steps_left == 0:
                raise Canceled()


def test_a_cancel_from_progress_stops_the_walk_within_a_denoising_step(components, tmp_path):
    events = []
    unet_calls = components.unet.register_forward_pre_hook(lambda module, args: events.append("unet"))
    try:
        with pytest.raises(Canceled):
            list(animate(components, settings(), tmp_path, progress=CancelAt("keyframe_denoise", 3, events)))
    finally:
        unet_calls.remove()
    # Reported before the first step and after each (PNDM: 5 calls for 4 steps, none
    # shared), so the third report comes after two calls, and the third never runs.
    keyframe_events = events[events.index(("keyframe_denoise", 0)):]
    assert keyframe_events == [("keyframe_denoise", 0), "unet", ("keyframe_denoise", 0), "unet", ("keyframe_denoise", 1)]
    assert list(tmp_path.iterdir()) == []


def test_a_cancel_from_progress_stops_the_walk_within_a_film_call(components, tmp_path, monkeypatch):
    events = []
    film_midpoints = components.film.midpoints
    monkeypatch.setattr(components.film, "midpoints", lambda *args: events.append("film") or film_midpoints(*args))
    walk = settings(num_interpolation_steps=8)  # bisection depth 3: a frame can take several FILM calls
    with pytest.raises(Canceled):
        list(animate(components, walk, tmp_path, progress=CancelAt("inbetweens", 12, events)))
    film_events = events[events.index("film") - 1:]
    assert film_events[-1][0] == "inbetweens"  # nothing ran after the cancel
    assert ("film", "film") not in zip(film_events, film_events[1:])  # a report before every FILM call
    assert film_events.count("film") >= 4
    assert list(tmp_path.iterdir()) == []


class Recorder(Progress):
    """Records the stages entered and the keyframe batches, and logs as the base class."""

    def __init__(self):
        super().__init__()
        self.entered, self.batches = [], []

    def stage(self, name, detail=""):
        self.entered.append(name)
        return super().stage(name, detail)

    def keyframes_decoded(self, start, latents, images, total):
        super().keyframes_decoded(start, latents, images, total)
        self.batches.append((start, latents.clone(), images.clone(), total))


@pytest.mark.parametrize(
    "overrides",
    [dict(intermediate_output=True), dict(output_format="mp4", film_interpolation=False, gif_ping_pong=True)],
    ids=["film-gif", "latent-pingpong-mp4"],
)
def test_every_stage_is_reported_by_the_walk(components, tmp_path, overrides):
    progress = Recorder()
    walk = settings(num_animation_frames=3, **overrides)  # 3 prompts, 3 per segment: K = 5
    outputs = list(animate(components, walk, tmp_path, progress=progress))

    assert set(progress.seconds) == WALK_STAGES
    assert all(seconds >= 0 for seconds in progress.seconds.values())
    # In the walk's order, the in-betweens made inside "encode", which runs alongside.
    order = ["text", "shared_denoise", "keyframe_denoise", "decode", "encode", "inbetweens"]
    assert list(dict.fromkeys(progress.entered)) == order
    assert progress.open_stages == []
    # CPU keyframe batches of 4: keyframes 0-3, then 4.
    assert [(start, total) for start, _, _, total in progress.batches] == [(0, 5), (4, 5)]
    assert [tuple(latents.shape) for _, latents, _, _ in progress.batches] == [(4, 4, 8, 8), (1, 4, 8, 8)]
    assert [tuple(images.shape) for _, _, images, _ in progress.batches] == [(4, 3, 64, 64), (1, 3, 64, 64)]
    if walk.intermediate_output:  # the keyframes reported are the ones written
        images = torch.cat([images for _, _, images, _ in progress.batches])
        for index, path in enumerate(outputs[:-1]):
            assert np.array_equal(np.asarray(Image.open(path)), (images[index] * 255).round().permute(1, 2, 0).byte().numpy())


def test_a_nested_stage_is_not_counted_in_the_enclosing_one(capsys, monkeypatch):
    clock = iter([0.0, 1.0, 3.0, 4.0, 5.0, 9.0])  # encode 0-9 holds in-betweens 1-3 and 4-5
    progress = Progress()
    monkeypatch.setattr(progress, "now", lambda: next(clock))
    with progress.stage("encode"):
        with progress.stage("inbetweens"):
            pass
        with progress.stage("inbetweens"):
            pass
    assert progress.seconds == {"inbetweens": 3.0, "encode": 6.0}
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == ["in-betweens took 3.0 s", "encoding took 6.0 s"]
    with pytest.raises(ValueError, match="unknown stage 'denoise'"):
        with progress.stage("denoise"):
            pass


def test_a_stage_nested_two_deep_is_counted_and_logged_on_its_own(capsys, monkeypatch):
    """Upscaling runs inside the in-betweens' stage, inside encoding's."""
    clock = iter([0.0, 1.0, 2.0, 5.0, 6.0, 10.0])  # encode 0-10 > in-betweens 1-6 > upscale 2-5
    progress = Progress()
    monkeypatch.setattr(progress, "now", lambda: next(clock))
    with progress.stage("encode"):
        with progress.stage("inbetweens"):
            with progress.stage("upscale"):
                pass
    assert progress.seconds == {"upscale": 3.0, "inbetweens": 2.0, "encode": 5.0}
    lines = [line.split("] ", 1)[1] for line in capsys.readouterr().out.splitlines()]
    assert lines == ["in-betweens took 2.0 s", "upscaling took 3.0 s", "encoding took 5.0 s"]


def test_frame_progress_is_logged_about_ten_times(capsys):
    progress = Progress()
    for done in range(47):
        progress.step("inbetweens", done, 46, "FILM")
        progress.step("inbetweens", done, 46, "FILM")  # again, as before a FILM call
    lines = [line.split("] ", 1)[1] for line in capsys.readouterr().out.splitlines()]
    assert lines == [f"in-betweens: {done}/46 frames (FILM)" for done in (4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 46)]


def file_bytes(paths):
    return {path.name: path.read_bytes() for path in paths}


@pytest.mark.parametrize("scheduler", SCHEDULER_NAMES)
def test_same_seed_gives_the_same_bytes_with_every_scheduler_whatever_torchs_global_seed(
    components, tmp_path, scheduler
):
    """Euler ancestral draws noise at every step (and Euler draws some it does not use):
    all of it comes from the seed, none from torch's global generator."""
    def run(name, seed, global_seed):
        torch.manual_seed(global_seed)
        walk = settings(scheduler=scheduler, seed=seed, intermediate_output=True)
        return file_bytes(animate(components, walk, tmp_path / name))

    first = run("a", 42, global_seed=0)
    assert run("b", 42, global_seed=1) == first
    assert run("c", 43, global_seed=0)["animation.gif"] != first["animation.gif"]


def test_the_sampler_is_logged_once_and_pndm_by_name_is_the_default(components, tmp_path, capsys):
    default = file_bytes(animate(components, settings(intermediate_output=True), tmp_path / "default"))
    log = capsys.readouterr().out
    assert len(re.findall(r"\] Sampler: ", log)) == 1
    assert "] Sampler: PNDMScheduler (default)\n" in log
    by_name = file_bytes(animate(components, settings(scheduler="PNDM", intermediate_output=True), tmp_path / "pndm"))
    assert "] Sampler: PNDMScheduler (PNDM)\n" in capsys.readouterr().out
    assert by_name == default
    euler = file_bytes(animate(components, settings(scheduler="K_EULER", intermediate_output=True), tmp_path / "euler"))
    assert "] Sampler: EulerDiscreteScheduler (K_EULER)\n" in capsys.readouterr().out
    assert euler["animation.gif"] != default["animation.gif"]


@contextlib.contextmanager
def model_calls(components) -> Iterator[list[str]]:
    """The names of the models ("unet", "text", "vae") called inside the block, in order."""
    calls = []
    hooks = [
        model.register_forward_pre_hook(lambda module, args, name=name: calls.append(name))
        for name, model in [("unet", components.unet), ("text", components.text_encoder), ("vae", components.vae)]
    ]
    try:
        yield calls
    finally:
        for hook in hooks:
            hook.remove()


def test_a_bad_init_image_fails_the_walk_before_any_model_runs(components, tmp_path):
    not_a_picture = tmp_path / "notes.png"
    not_a_picture.write_text("just some text")
    output_dir = tmp_path / "out"
    with model_calls(components) as calls:
        with pytest.raises(InputError, match=r"^init_image is a 14-byte file that is not a picture"):
            list(animate(components, settings(init_image=not_a_picture), output_dir))
    assert calls == []
    assert list(output_dir.iterdir()) == []


def test_a_walk_from_an_init_image_runs_no_shared_steps_and_reports_every_stage(components, tmp_path, capsys):
    picture = tmp_path / "start.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)).save(picture)
    progress = StepRecorder()
    unet_samples = []
    hook = components.unet.register_forward_pre_hook(lambda module, args: unet_samples.append(args[0].shape[0]))
    try:
        walk = settings(init_image=picture, prompt_strength=0.5, num_animation_frames=3)  # K = 5, n_shared = 2
        outputs = list(animate(components, walk, tmp_path / "out", progress=progress))
    finally:
        hook.remove()
    assert [path.name for path in outputs] == ["animation.gif"]
    # The shared start is the picture, noised: a stage with no steps, timed like any other.
    assert set(progress.seconds) == WALK_STAGES
    assert [name for name, _ in progress.steps if name == "shared_denoise"] == []
    # PNDM: 5 calls for 4 steps, 2 skipped; batches of 4 and 1 keyframes, the first step's
    # unconditional half once for all.
    assert unet_samples == [1, 4, 8, 8, 1, 2, 2]
    # The keyframes start at the step the picture was noised to (2 of PNDM's 5 calls: step 1).
    assert progress.steps[0] == ("keyframe_denoise", 1)
    log = capsys.readouterr().out.splitlines()
    read = log.index("init_image: 80x48 PNG (RGB), scaled and cropped to 64x64")
    assert read < next(index for index, line in enumerate(log) if "] text took" in line)
    assert any(line.endswith("] shared start: from init_image, noised to step 1/4") for line in log)


def test_prompt_strength_0_from_an_init_image_logs_that_no_steps_run(components, tmp_path, capsys):
    picture = tmp_path / "start.png"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(picture)
    outputs = list(animate(components, settings(init_image=picture, prompt_strength=0.0), tmp_path / "out"))
    assert [path.name for path in outputs] == ["animation.gif"]
    assert "] shared start: from init_image, as it is, no steps to run\n" in capsys.readouterr().out


def test_disable_safety_checker_skips_a_checker_that_would_flag(components, tmp_path, capsys, make_safety_checker):
    checker, processor = make_safety_checker(threshold=-2.0)  # flags every image
    guarded = dataclasses.replace(components, safety_checker=checker, feature_extractor=processor)
    outputs = list(animate(guarded, settings(disable_safety_checker=True, intermediate_output=True), tmp_path / "a"))
    assert [path.name for path in outputs][-1] == "animation.gif" and len(outputs) == 4
    log = capsys.readouterr().out
    assert log.count("] safety check: skipped, as disable_safety_checker asks\n") == 1
    # Without a checker there is nothing to skip, and nothing is said.
    list(animate(components, settings(disable_safety_checker=True), tmp_path / "b"))
    assert "safety check" not in capsys.readouterr().out
    with pytest.raises(UnsafeContentError):
        list(animate(guarded, settings(), tmp_path / "c"))


def test_a_negative_prompt_changes_the_keyframes_and_a_long_one_is_cut_and_logged(components, tmp_path, capsys):
    plain = file_bytes(animate(components, settings(intermediate_output=True), tmp_path / "plain"))
    negative = file_bytes(
        animate(components, settings(negative_prompt="x " * 100, intermediate_output=True), tmp_path / "negative")
    )
    assert negative["keyframe-000.png"] != plain["keyframe-000.png"]
    log = capsys.readouterr().out
    assert "The negative prompt is 102 tokens long and the text encoder reads 77, so its last 25 tokens were cut" in log
    assert "Prompt 4" not in log


class StepRecorder(Progress):
    """Records the (stage, steps done) reported, and logs as the base class."""

    def __init__(self):
        super().__init__()
        self.steps = []

    def step(self, name, done, total, detail=""):
        super().step(name, done, total, detail)
        self.steps.append((name, done))
