"""The whole walk (docs/behaviour.md, "The walk"), one named stage after another.

[audio read and analysed] -> [init image read] -> prompts -> text conditioning -> shared
start (or the init image, noised) -> keyframe batches (keyframe conditioning, denoise,
decode) -> in walk order: safety check, [keyframe PNGs, upscaled as the frames are] ->
in-betweens -> [upscaling] -> [ping-pong] -> encoder (with the sound) -> the animation
file, yielded last. With even pacing the keyframes are rendered in two rounds, and the
frames of each gap follow from how much the picture changes in it (docs/behaviour.md,
"Pacing"). Each stage reports to one Progress (animate.progress), and every batched model
call runs through a StageBatches (animate.memory), which halves a batch that runs out of
GPU memory. SD 1.x/2.x and SDXL checkpoints differ only in their text conditioning
(text_conditioning); the rest of the walk is the same. Rendering keyframes at places on
the walk is one seam (RenderKeyframes): a test can draw them with a known function of the
walk position instead.
"""

import dataclasses
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from animate.diffusion.denoise import (
    denoise_keyframes,
    image_start,
    latent_noise,
    seed_generator,
    shared_denoise,
    uses_guidance,
)
from animate.diffusion.safety import check_keyframes
from animate.diffusion.schedulers import chosen_scheduler
from animate.diffusion.vae import decode_latents
from animate.frames.host import ping_pong, to_uint8
from animate.frames.inbetween import film_frames, latent_frames
from animate.frames.pacing import picture_changes
from animate.frames.upscale import tile_side, upscale_images, upscaled_frames
from animate.inputs.audio import read_audio
from animate.inputs.init_image import load_init_image
from animate.inputs.music_pace import audio_gap_frames
from animate.inputs.plan import KeyframePlan, Place, coarse_plan, share_out, split_places
from animate.inputs.settings import Settings
from animate.memory import (
    WHOLE,
    StageBatches,
    decode_batch_size,
    film_batch_size,
    keyframe_batch_size,
    upscale_pixels_per_call,
)
from animate.output.encoder_thread import encode_in_background
from animate.output.files import write_png
from animate.output.gif import encode_gif, gif_encoder_count
from animate.output.mp4 import encode_mp4
from animate.progress import Progress
from animate.slerp import slerp
from animate.text.clip import encode_prompts
from animate.text.conditioning import Conditioning
from animate.text.sdxl import add_time_ids, encode_sdxl_prompts
from animate.weights import Components, require_upscaler

# Frames per device-to-host copy; a few frames, so host memory stays small at 1024x768.
HOST_CHUNK = 8
# Pacings: keyframes evenly along the embedding walk, or where the picture changes (docs/behaviour.md, "Pacing").
PACINGS = ("linear", "even")

# Renders keyframes at places on the walk: given their (segment, t), yields (latents
# (B, 4, h, w), images (B, 3, H, W) in [0, 1]) batch by batch, in the order given.
RenderKeyframes = Callable[[Sequence[Place]], Iterator[tuple[torch.Tensor, torch.Tensor]]]


def plan_for(settings: Settings) -> KeyframePlan:
    """The linear plan of the request: N keyframes per segment, S frames per gap."""
    return KeyframePlan(
        num_prompts=len(settings.prompts),
        keyframes_per_segment=settings.num_animation_frames,
        interpolation_steps=settings.num_interpolation_steps,
        ping_pong=settings.ping_pong,
        loop=settings.loop,
    )


def keyframe_embeddings(places: Sequence[Place], prompt_embeddings: torch.Tensor) -> torch.Tensor:
    """Conditional embedding of each keyframe at `places`, (K, ...): slerp(t, e_p, e_p+1)
    per keyframe, where p + 1 is the first prompt again on a loop's closing segment.

    prompt_embeddings (P, ...), one per prompt: per-token (P, L, D) or pooled (P, E); each
    prompt's embedding is slerped as one vector.
    """
    segments = torch.tensor([segment for segment, _ in places], device=prompt_embeddings.device)
    t = torch.tensor([t for _, t in places], device=prompt_embeddings.device)
    following = (segments + 1) % prompt_embeddings.shape[0]
    return slerp(t, prompt_embeddings[segments], prompt_embeddings[following])


def walk_embedding(plan: KeyframePlan, prompt_embeddings: torch.Tensor, position: float) -> torch.Tensor:
    """The embedding (1, ...) at a fraction `position` of the whole walk, from prompt_embeddings (P, ...)."""
    segment, t = plan.walk_position(position)
    return slerp(t, prompt_embeddings[segment : segment + 1], prompt_embeddings[segment + 1 : segment + 2])


def text_conditioning(
    components: Components, settings: Settings, progress: Progress | None = None
) -> tuple[Conditioning, Conditioning]:
    """The conditioning of the P prompts (P samples) and of the negative prompt (1 sample,
    the unconditional half of guidance), every text encoded once, all in one batch unless
    it runs out of memory (stage "text", logged to `progress`).

    SD 1.x/2.x: CLIP's embeddings (animate.text.clip). SDXL: both encoders' embeddings and the
    pooled one, as diffusers' StableDiffusionXLPipeline makes them (animate.text.sdxl), with
    the size conditioning of the requested size, the same for both halves.
    """
    prompts = list(settings.prompts)
    batches = stage_batches(components, Progress() if progress is None else progress, "text", WHOLE)
    if components.kind == "sdxl":
        text = encode_sdxl_prompts(components, prompts, settings.negative_prompt, batches)
        # In the embeddings' dtype, as diffusers makes them.
        time_ids = add_time_ids(settings.height, settings.width, text.embeddings.dtype).to(components.device)
        return (
            Conditioning(text.embeddings, text.pooled, time_ids),
            Conditioning(text.negative_embeddings, text.negative_pooled, time_ids),
        )
    embeddings, uncond = encode_prompts(
        components.tokenizer, components.text_encoder, prompts, settings.negative_prompt, batches
    )
    return Conditioning(embeddings), Conditioning(uncond)


def keyframe_conditioning(places: Sequence[Place], prompts: Conditioning) -> Conditioning:
    """The conditioning of the keyframes at `places` (one sample each): its per-token
    embedding and (SDXL) its pooled embedding, each slerped between the keyframe's two
    prompts (keyframe_embeddings)."""
    return prompts.map(lambda embeddings: keyframe_embeddings(places, embeddings))


def walk_conditioning(plan: KeyframePlan, prompts: Conditioning, position: float) -> Conditioning:
    """The conditioning (1 sample) at a fraction `position` of the whole walk (walk_embedding)."""
    return prompts.map(lambda embeddings: walk_embedding(plan, embeddings, position))


def stage_batches(components: Components, progress: Progress, stage: str, size: int) -> StageBatches:
    """The batches of one stage of this walk on components' device, `size` items each to
    start with, logging to `progress` when they run out of memory (animate.memory)."""
    return StageBatches(stage, size, components.memory, progress)


class DiffusionRenderer:
    """Keyframes from Stable Diffusion, a RenderKeyframes: built once per walk, it encodes
    the text and runs the shared start (from noise, or from init_pixels (1, 3, H, W) in
    [-1, 1] when the walk has an init image); each call then finishes keyframes from that
    start in batches (denoise_keyframes) and decodes them, telling `progress` of each stage.

    The shared start is denoised at the walk's position 0.5 (plan.walk_position); the
    negative prompt's conditioning is the unconditional half at every step.
    """

    def __init__(
        self,
        components: Components,
        settings: Settings,
        plan: KeyframePlan,
        progress: Progress,
        init_pixels: torch.Tensor | None = None,
    ):
        self.components, self.settings, self.progress = components, settings, progress
        with progress.stage("text"):
            self.prompts, self.uncond = text_conditioning(components, settings, progress)
            middle = walk_conditioning(plan, self.prompts, 0.5)
        scheduler = chosen_scheduler(settings.scheduler, components.scheduler)
        progress.log("Sampler", f"{type(scheduler).__name__} ({settings.scheduler})")
        self.generator = seed_generator(settings.seed)
        noise = latent_noise(self.generator, settings.height, settings.width, components.device, components.dtype)
        if init_pixels is None:
            # One latent: nothing to halve, but a shared start that does not fit ends in one sentence.
            shared_start = stage_batches(components, progress, "shared start", 1)
            _, (self.shared, self.scheduler, self.remaining) = shared_start.run(
                0, 1, lambda start, stop: shared_denoise(
                    components.unet, scheduler, noise, settings.num_inference_steps,
                    settings.prompt_strength, middle, self.uncond, settings.guidance_scale, progress, self.generator,
                ),
            )
        else:
            self.shared, self.scheduler, self.remaining = image_start(
                components.vae, scheduler, init_pixels, noise, settings.num_inference_steps,
                settings.prompt_strength, progress, stage_batches(components, progress, "init_image", 1),
            )
        # Sized once, from the memory this process can use now; a batch that runs out of
        # memory halves the stage's batches for the rest of the walk, every round included.
        usable = components.memory.usable_bytes()
        guided = uses_guidance(settings.guidance_scale)
        self.keyframe_batches = stage_batches(
            components, progress, "keyframes",
            keyframe_batch_size(usable, settings.height, settings.width, guided, self.shared.element_size()),
        )
        self.decode_batches = stage_batches(
            components, progress, "decode",
            decode_batch_size(usable, settings.height, settings.width, components.vae.dtype.itemsize),
        )
        progress.log("keyframes", f"{plan.num_keyframes} keyframes, {self.keyframe_batches.size} per batch")

    def __call__(self, places: Sequence[Place]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(latents (B, 4, h, w), images (B, 3, H, W) in [0, 1]) of the keyframes at
        `places`, batch by batch."""
        components, settings = self.components, self.settings
        batches = denoise_keyframes(
            components.unet, self.scheduler, self.shared, self.remaining,
            keyframe_conditioning(places, self.prompts), self.uncond,
            settings.guidance_scale, self.keyframe_batches, self.progress, self.generator,
        )
        for start, latents in batches:
            with self.progress.stage("decode", f"keyframes {start + 1}-{start + latents.shape[0]} of {len(places)}"):
                images = decode_latents(components.vae, latents, self.decode_batches)
            yield latents, images


class WalkOrder:
    """The K keyframes, put in as they are rendered (in any order) and handed out in walk
    order: a run of them once every keyframe before it is there."""

    def __init__(self, count: int):
        self.latents: list[torch.Tensor | None] = [None] * count
        self.images: list[torch.Tensor | None] = [None] * count
        self.handed_out = 0

    def put(self, indices: Sequence[int], latents: torch.Tensor, images: torch.Tensor) -> None:
        """Keyframes indices[i] are latents[i] (4, h, w) and images[i] (3, H, W)."""
        for row, index in enumerate(indices):
            self.latents[index], self.images[index] = latents[row], images[row]

    def runs(self) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """(first index, latents (B, 4, h, w), images (B, 3, H, W)) of the keyframes now
        there from the first not yet handed out, if any."""
        stop = self.handed_out
        while stop < len(self.images) and self.images[stop] is not None:
            stop += 1
        if stop > self.handed_out:
            start, self.handed_out = self.handed_out, stop
            yield start, torch.stack(self.latents[start:stop]), torch.stack(self.images[start:stop])

    def all(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every keyframe's latents (K, 4, h, w) and images (K, 3, H, W), in walk order."""
        return torch.stack(self.latents), torch.stack(self.images)


def rendered(render: RenderKeyframes, places: Sequence[Place]) -> tuple[torch.Tensor, torch.Tensor]:
    """All of render(places) at once: latents (K, 4, h, w), images (K, 3, H, W)."""
    batches = list(render(places))
    return torch.cat([latents for latents, _ in batches]), torch.cat([images for _, images in batches])


def even_places(
    plan: KeyframePlan, render: RenderKeyframes, progress: Progress
) -> tuple[KeyframePlan, list[int], torch.Tensor, torch.Tensor]:
    """Even pacing's first round: render the coarse plan's keyframes (every prompt's own
    and some of the others, evenly: coarse_plan), then split each of its gaps into equal
    parts, the K - 1 gaps (K with loop) shared out in proportion to how much the picture
    changes over each coarse gap (share_out). Returns the plan with those places, the walk
    indices of the keyframes rendered, and their latents and images."""
    coarse = coarse_plan(plan)
    latents, images = rendered(render, coarse.keyframe_times())
    parts = share_out(picture_changes(images, plan.loop), plan.num_gaps)
    placed = split_places(coarse, parts)
    progress.log(
        "pacing", f"even: {coarse.num_keyframes} keyframes evenly first, then "
        f"{plan.num_keyframes - coarse.num_keyframes} more where the picture changes most",
    )
    done = [index for index, (_, own) in enumerate(placed) if own]
    return dataclasses.replace(plan, places=tuple(place for place, _ in placed)), done, latents, images


def even_gap_frames(plan: KeyframePlan, keyframe_images: torch.Tensor, progress: Progress) -> KeyframePlan:
    """The plan with the same number of frames, shared out among its gaps in proportion to
    how much the picture changes over each (share_out), at least one each."""
    frames = share_out(picture_changes(keyframe_images, plan.loop), sum(plan.frames_per_gap()))
    progress.log("pacing", f"even: {sum(frames)} frames shared out by change, {min(frames)} to {max(frames)} per gap")
    return dataclasses.replace(plan, gap_frames=tuple(frames))


def paces_evenly(settings: Settings) -> bool:
    """Whether keyframes and frames follow the picture's change (pacing=even); never with
    audio, whose music sets the frames (paced_by_the_music)."""
    if settings.pacing not in PACINGS:
        raise ValueError(f"unknown pacing {settings.pacing!r}: the pacings are {', '.join(PACINGS)}")
    return settings.pacing == "even" and settings.audio is None


def walk_keyframes(
    components: Components,
    settings: Settings,
    plan: KeyframePlan,
    render: RenderKeyframes,
    progress: Progress,
    output_dir: Path,
    upscaling: StageBatches | None = None,
) -> Generator[Path, None, tuple[KeyframePlan, torch.Tensor, torch.Tensor]]:
    """Render every keyframe, in two rounds with even pacing (even_places); safety-check
    them (unless the settings disable it) and report them to `progress` in walk order, as
    soon as their place in it is final, and then yield their PNGs (with
    intermediate_output; upscaled like the frames when `upscaling` has the upscaler's
    batches). Returns the plan as walked (with even pacing: its places and frames per gap)
    and the keyframes' latents (K, 4, h, w) and images (K, 3, H, W)."""
    safety_checker = None if settings.disable_safety_checker else components.safety_checker
    if safety_checker is None and components.safety_checker is not None:
        progress.log("safety check", "skipped, as disable_safety_checker asks")
    safety_batches = stage_batches(components, progress, "safety check", WHOLE)
    keyframes = WalkOrder(plan.num_keyframes)
    to_render = list(range(plan.num_keyframes))
    even = paces_evenly(settings)
    if even:
        plan, done, latents, images = even_places(plan, render, progress)
        keyframes.put(done, latents, images)
        to_render = sorted(set(to_render) - set(done))

    def hand_out() -> Iterator[Path]:
        """Check, report and write the keyframes whose place in the walk is now final."""
        for start, run_latents, run_images in keyframes.runs():
            check_keyframes(
                safety_checker, components.feature_extractor, run_images, start, plan.num_keyframes, safety_batches
            )
            progress.keyframes_decoded(start, run_latents, run_images, plan.num_keyframes)
            if settings.intermediate_output:
                pictures = upscaled_keyframes(components, settings, run_images, upscaling, progress)
                for offset, picture in enumerate(pictures):
                    yield write_png(picture, output_dir / f"keyframe-{start + offset:03d}.png")

    yield from hand_out()  # even pacing: the first round's keyframes before the first new one
    places = plan.keyframe_times()
    rendered_so_far = 0
    for latents, images in render([places[index] for index in to_render]):
        keyframes.put(to_render[rendered_so_far : rendered_so_far + latents.shape[0]], latents, images)
        rendered_so_far += latents.shape[0]
        yield from hand_out()
    keyframe_latents, keyframe_images = keyframes.all()
    if even:
        plan = even_gap_frames(plan, keyframe_images, progress)
    return plan, keyframe_latents, keyframe_images


def animation_frames(
    components: Components,
    settings: Settings,
    plan: KeyframePlan,
    keyframe_latents: torch.Tensor,
    keyframe_images: torch.Tensor,
    progress: Progress,
) -> Iterator[torch.Tensor]:
    """The F frames (3, H, W) in order, with FILM or with slerped latents, as many per gap as
    the plan says, in batches sized from the memory components.memory says this process can
    use now."""
    gap_frames = plan.frames_per_gap()
    usable = components.memory.usable_bytes()
    if settings.film_interpolation:
        film_dtype = next(components.film.parameters()).dtype
        size = film_batch_size(usable, settings.height, settings.width, max(gap_frames), film_dtype.itemsize)
        batches = stage_batches(components, progress, "FILM", size)
        return film_frames(components.film, keyframe_images, gap_frames, progress, batches)
    size = decode_batch_size(usable, settings.height, settings.width, components.vae.dtype.itemsize)
    batches = stage_batches(components, progress, "in-betweens", size)
    return latent_frames(components.vae, keyframe_latents, keyframe_images, gap_frames, batches)


def upscale_batches(components: Components, settings: Settings, progress: Progress) -> StageBatches | None:
    """The upscaler's batches (stage "upscale"), counted in input pixels per call, sized
    from the memory components.memory says this process can use (animate.memory) and
    logged with the upscaled size; None when the request does not upscale."""
    if settings.upscale_factor == 1:
        return None
    usable = components.memory.usable_bytes()
    pixels_per_call = upscale_pixels_per_call(usable, components.upscaler.dtype.itemsize)
    factor, frame_pixels = settings.upscale_factor, settings.width * settings.height
    frames_per_call = pixels_per_call // frame_pixels
    per_call = (
        f"{frames_per_call} frame{'s' if frames_per_call > 1 else ''} per call" if frames_per_call
        else f"tiles of {tile_side(pixels_per_call)}x{tile_side(pixels_per_call)} pixels"
    )
    progress.log("upscaling", f"{factor}x to {settings.width * factor}x{settings.height * factor}, {per_call}")
    return stage_batches(components, progress, "upscale", pixels_per_call)


def upscaled_keyframes(
    components: Components, settings: Settings, images: torch.Tensor, upscaling: StageBatches | None, progress: Progress
) -> np.ndarray:
    """Keyframes (B, 3, H, W) in [0, 1] as the PNGs show them: upscaled like every frame of
    the animation (stage "upscale") when `upscaling` has the upscaler's batches, as uint8
    (B, fH, fW, 3)."""
    if upscaling is None:
        return to_uint8(images)
    with progress.stage("upscale", "keyframe PNGs"):
        return to_uint8(upscale_images(components.upscaler, images, settings.upscale_factor, upscaling))


def host_frames(frames: Iterable[torch.Tensor], total: int, progress: Progress, method: str) -> Iterator[np.ndarray]:
    """The `total` frames as uint8 (H, W, 3) on the host. Making them is stage "inbetweens"
    of `progress`, reported after each frame; handing them on (to the encoder) is not.
    `progress` sees each chunk of them (frames_made) before they are handed on.

    Frames are converted to uint8 on their device HOST_CHUNK at a time and copied to the
    host in one transfer per chunk: on CUDA each copy waits for the GPU, so one wait per
    chunk instead of one per frame keeps it busy.
    """
    iterator = iter(frames)
    done = 0
    while done < total:
        with progress.stage("inbetweens"):
            chunk = []
            for _ in range(min(HOST_CHUNK, total - done)):
                chunk.append(next(iterator))
                progress.step("inbetweens", done + len(chunk), total, method)
            pictures = to_uint8(torch.stack(chunk))
        done += len(chunk)
        progress.frames_made(pictures)
        yield from pictures


def paced_by_the_music(settings: Settings, plan: KeyframePlan, progress: Progress) -> KeyframePlan:
    """The plan with each gap's frame count as the request's sound track paces them
    (docs/behaviour.md, "Audio"); the plan as it is without audio.

    Decodes and analyses the sound first, so a file that cannot be used, or one too short
    for the plan's keyframes, raises InputError before any model runs. With audio the
    music sets the frames, so num_interpolation_steps and pacing are not used (logged).
    """
    if settings.audio is None:
        return plan
    track = read_audio(settings.audio)
    gaps = audio_gap_frames(
        track, plan.num_keyframes, settings.frames_per_second, settings.audio_pace_strength, plan.loop
    )
    plan = dataclasses.replace(plan, gap_frames=tuple(gaps))
    progress.log(
        "audio",
        f"{track.seconds:.2f} s, {plan.num_frames} frames at {settings.frames_per_second} fps; "
        f"the music (audio_pace_strength {settings.audio_pace_strength:g}) gives the {len(gaps)} gaps "
        f"{min(gaps)} to {max(gaps)} frames",
    )
    unused = ["num_interpolation_steps"] + (["pacing"] if settings.pacing != "linear" else [])
    verb = "is" if len(unused) == 1 else "are"
    progress.log("audio", f"the music sets the frames, so {' and '.join(unused)} {verb} not used")
    return plan


def gif_encoders(device: torch.device) -> int:
    """ffmpeg processes to encode a GIF with. On CUDA the cores are free while the GPU makes
    the frames, and one ffmpeg would be the slowest stage; on CPU torch's threads already
    use every core, and the frames come slower than one ffmpeg encodes them."""
    return gif_encoder_count() if device.type == "cuda" else 1


def encode_animation(
    settings: Settings,
    frames: Iterable[np.ndarray],
    keyframes: np.ndarray,
    path: Path,
    num_frames: int,
    device: torch.device,
) -> None:
    """Stream the frames (uint8 (H, W, 3)) into the GIF or MP4 at `path`."""
    if settings.output_format == "gif":
        encode_gif(frames, path, settings.frames_per_second, keyframes, num_frames, gif_encoders(device))
    elif settings.output_format == "mp4":
        encode_mp4(frames, path, settings.frames_per_second, settings.audio, num_frames)
    else:
        raise ValueError(f"unknown output_format {settings.output_format!r}")


@torch.inference_mode()
def animate(
    components: Components,
    settings: Settings,
    output_dir: str | Path,
    progress: Progress | None = None,
    render: RenderKeyframes | None = None,
    encode: bool = True,
) -> Iterator[Path]:
    """Run the walk; yield keyframe-NNN.png files (with intermediate_output) as the
    keyframes' places in the walk become final, then animation.gif / animation.mp4 last.

    `progress` hears of every stage, denoising step, frame and keyframe batch, and may raise
    from its `step` to stop the walk (see animate.progress); by default a new Progress logs
    them on stdout. `render` makes the keyframes at places on the walk; by default a
    DiffusionRenderer (text, shared start, UNet and VAE). An audio file or init image that
    cannot be used raises InputError before any model runs. With encode=False (the
    benchmark, on a GPU machine without ffmpeg) the frames are made and copied to the host
    as usual, then dropped: no animation file, no stage "encode".
    """
    progress = Progress() if progress is None else progress
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    # Checked and read first, so that a request this server cannot serve, or a sound or a
    # picture that cannot be used, fails the walk before any model runs.
    require_upscaler(components, settings.upscale)
    plan = paced_by_the_music(settings, plan_for(settings), progress)
    walk = f"Walk over {len(settings.prompts)} prompts" + (" and back to the first" if plan.loop else "")
    progress.log(
        walk, f"{plan.num_keyframes} keyframes, {plan.num_frames} frames, {plan.num_output_frames} in the animation"
    )
    upscaling = upscale_batches(components, settings, progress)
    init_pixels = None
    if settings.init_image is not None:
        init_pixels = load_init_image(settings.init_image, settings.width, settings.height)
    if render is None:
        render = DiffusionRenderer(components, settings, plan, progress, init_pixels)

    plan, keyframe_latents, keyframe_images = yield from walk_keyframes(
        components, settings, plan, render, progress, output_dir, upscaling
    )

    method = "FILM" if settings.film_interpolation else "latent slerp"
    frames = animation_frames(components, settings, plan, keyframe_latents, keyframe_images, progress)
    if upscaling is not None:
        frames = upscaled_frames(
            components.upscaler, frames, plan.num_frames, settings.upscale_factor, upscaling, progress
        )
    frames = host_frames(frames, plan.num_frames, progress, method)
    if not encode:
        for _ in frames:
            pass
        return
    if settings.ping_pong:
        frames = ping_pong(frames, output_dir)
    path = output_dir / f"animation.{settings.output_format}"
    progress.log("encoding", f"{path.name}, {plan.num_output_frames} frames at {settings.frames_per_second} fps")
    keyframe_pictures = to_uint8(keyframe_images)
    # The encoder runs in a thread alongside the making of the frames (stage "inbetweens",
    # nested in this one): "encode" is the time it adds beyond them, not its whole time.
    with progress.stage("encode"):
        encode_in_background(
            lambda queued: encode_animation(
                settings, queued, keyframe_pictures, path, plan.num_output_frames, components.device
            ),
            frames,
        )
    yield path
