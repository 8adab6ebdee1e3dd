"""The validated settings of one prediction, built from the public inputs, and their defaults."""

import os
from dataclasses import dataclass
from pathlib import Path

from animate.inputs.prompts import InputError, check_length, parse_prompts

# The seeds torch.Generator.manual_seed takes, the function the hosted model gave its seed to:
# any signed or unsigned 64-bit integer (a negative one counts modulo 2**64). predict.py
# states them again as literals (tests/test_predict_source.py holds the two together).
MIN_SEED = -(2**63)
MAX_SEED = 2**64 - 1
# A seed drawn when none is given is smaller, as the hosted model's was: 0..2**32-1.
DRAWN_SEED_BYTES = 4

# The defaults of the public inputs that have one, by input name: the one place the rest of
# the project takes them from. predict.py states them again as literals, because `cog build`
# reads its text, not its values; tests/test_predict_source.py holds the two together.
INPUT_DEFAULTS = {
    "width": 512,
    "height": 512,
    "num_inference_steps": 50,
    "prompt_strength": 0.8,
    "num_animation_frames": 10,
    "num_interpolation_steps": 5,
    "guidance_scale": 7.5,
    "gif_frames_per_second": 20,
    "gif_ping_pong": False,
    "film_interpolation": True,
    "intermediate_output": False,
    "seed": None,
    "output_format": "gif",
    # Beyond the hosted model's 15 inputs: each default leaves the walk as it was without them.
    "negative_prompt": "",
    "init_image": None,
    "scheduler": "default",
    "disable_safety_checker": False,
    "audio": None,
    "audio_pace_strength": 0.5,
    "loop": False,
    "pacing": "linear",
    "upscale": "none",
}

# The upscale input's choices and the factor each multiplies the frame's sides by.
UPSCALE_FACTORS = {"none": 1, "2x": 2, "4x": 4}
# The largest frame the animation may have, in pixels: 4096x2304, or 36,864 of H.264's
# 16x16 macroblocks, the most that H.264 levels 5.1 and 5.2 allow in a frame. Those are the
# highest levels that the hardware video decoders of phones and computers commonly play
# (4K video); libx264 would encode larger frames at level 6, which many of them refuse.
# GIFs are held to the same bound (docs/behaviour.md, "Upscaling", says what they weigh).
# With the sizes the inputs allow it refuses one request only: 4x of 1024x768.
MAX_OUTPUT_PIXELS = 4096 * 2304


@dataclass(frozen=True)
class Settings:
    """Everything the walk needs, in the walk's own names (docs/behaviour.md, "The walk").

    Only the prompts and the seed have no default; the rest default to the inputs' defaults.
    """

    prompts: tuple[str, ...]
    seed: int
    width: int = INPUT_DEFAULTS["width"]
    height: int = INPUT_DEFAULTS["height"]
    num_inference_steps: int = INPUT_DEFAULTS["num_inference_steps"]
    prompt_strength: float = INPUT_DEFAULTS["prompt_strength"]
    num_animation_frames: int = INPUT_DEFAULTS["num_animation_frames"]
    num_interpolation_steps: int = INPUT_DEFAULTS["num_interpolation_steps"]
    guidance_scale: float = INPUT_DEFAULTS["guidance_scale"]
    frames_per_second: int = INPUT_DEFAULTS["gif_frames_per_second"]
    ping_pong: bool = INPUT_DEFAULTS["gif_ping_pong"]
    film_interpolation: bool = INPUT_DEFAULTS["film_interpolation"]
    intermediate_output: bool = INPUT_DEFAULTS["intermediate_output"]
    output_format: str = INPUT_DEFAULTS["output_format"]
    negative_prompt: str = INPUT_DEFAULTS["negative_prompt"]
    init_image: Path | None = INPUT_DEFAULTS["init_image"]
    scheduler: str = INPUT_DEFAULTS["scheduler"]
    disable_safety_checker: bool = INPUT_DEFAULTS["disable_safety_checker"]
    audio: Path | None = INPUT_DEFAULTS["audio"]
    audio_pace_strength: float = INPUT_DEFAULTS["audio_pace_strength"]
    loop: bool = INPUT_DEFAULTS["loop"]
    pacing: str = INPUT_DEFAULTS["pacing"]
    upscale: str = INPUT_DEFAULTS["upscale"]

    @property
    def upscale_factor(self) -> int:
        """What `upscale` multiplies the width and the height of every frame by: 1, 2 or 4."""
        return UPSCALE_FACTORS[self.upscale]


def check_output_size(width: int, height: int, upscale: str) -> None:
    """InputError when width x height upscaled by `upscale` is over MAX_OUTPUT_PIXELS."""
    factor = UPSCALE_FACTORS[upscale]
    if width * factor * height * factor > MAX_OUTPUT_PIXELS:
        raise InputError(
            f"upscale={upscale} would make frames of {width * factor}x{height * factor} pixels, more than "
            f"the largest output, {MAX_OUTPUT_PIXELS:,} pixels (4096x2304, what H.264 players decode): "
            "choose a smaller upscale, width or height."
        )


def draw_seed() -> int:
    """A seed in 0..2**32-1 from the operating system's random source."""
    return int.from_bytes(os.urandom(DRAWN_SEED_BYTES), "big")


def checked_seed(seed: int | float) -> int:
    """The seed as an int; InputError when torch.Generator.manual_seed would refuse it.

    The server passes JSON 7.0 for an integer input as the float 7.0, and an integer
    beyond 64 bits as the nearest float64, so a float at a bound stands for a seed beyond
    it: -2**63 - 1 arrives as -2**63 (a float), 2**64 + 1 as 2**64. The deployed schema
    lets 2**64 itself through too, since cog build wrote its maximum through float64.
    """
    in_range = MIN_SEED < seed <= MAX_SEED if isinstance(seed, float) else MIN_SEED <= seed <= MAX_SEED
    if not in_range:
        raise InputError(f"seed {seed} is out of range: use a whole number from {MIN_SEED} to {MAX_SEED}.")
    return int(seed)


def settings_from_inputs(
    prompt_start: str,
    prompt_end: str,
    width: int,
    height: int,
    num_inference_steps: int,
    prompt_strength: float,
    num_animation_frames: int,
    num_interpolation_steps: int,
    guidance_scale: float,
    gif_frames_per_second: int,
    gif_ping_pong: bool,
    film_interpolation: bool,
    intermediate_output: bool,
    seed: int | None,
    output_format: str,
    negative_prompt: str = INPUT_DEFAULTS["negative_prompt"],
    init_image: str | Path | None = INPUT_DEFAULTS["init_image"],
    scheduler: str = INPUT_DEFAULTS["scheduler"],
    disable_safety_checker: bool = INPUT_DEFAULTS["disable_safety_checker"],
    audio: str | Path | None = INPUT_DEFAULTS["audio"],
    audio_pace_strength: float = INPUT_DEFAULTS["audio_pace_strength"],
    loop: bool = INPUT_DEFAULTS["loop"],
    pacing: str = INPUT_DEFAULTS["pacing"],
    upscale: str = INPUT_DEFAULTS["upscale"],
) -> Settings:
    """Validate what the server schema cannot (prompt content, seed range, inputs that
    cannot go together, the upscaled size) and fix the seed.

    Bounds and choices of the other inputs are declared once, in predict.py, and enforced
    by the server before predict() runs. Prints `Using seed: N`.
    """
    prompts = parse_prompts(prompt_start, prompt_end)
    check_length("negative_prompt", negative_prompt)
    if audio is not None:
        check_audio_output(output_format, gif_ping_pong)
    if loop and gif_ping_pong:
        raise InputError(
            "loop and gif_ping_pong cannot both be true: a loop already ends where it starts, "
            "so set one of them to false."
        )
    check_output_size(int(width), int(height), str(upscale))
    seed = draw_seed() if seed is None else checked_seed(seed)
    print(f"Using seed: {seed}", flush=True)
    return Settings(
        prompts=tuple(prompts),
        width=int(width),
        height=int(height),
        num_inference_steps=int(num_inference_steps),
        prompt_strength=float(prompt_strength),
        num_animation_frames=int(num_animation_frames),
        num_interpolation_steps=int(num_interpolation_steps),
        guidance_scale=float(guidance_scale),
        frames_per_second=int(gif_frames_per_second),
        ping_pong=bool(gif_ping_pong),
        film_interpolation=bool(film_interpolation),
        intermediate_output=bool(intermediate_output),
        seed=int(seed),
        output_format=str(output_format),
        negative_prompt=str(negative_prompt),
        init_image=None if init_image is None else Path(init_image),
        scheduler=str(scheduler),
        disable_safety_checker=bool(disable_safety_checker),
        audio=None if audio is None else Path(audio),
        audio_pace_strength=float(audio_pace_strength),
        loop=bool(loop),
        pacing=str(pacing),
        upscale=str(upscale),
    )


def check_audio_output(output_format: str, gif_ping_pong: bool) -> None:
    """InputError unless the animation can carry a sound track (docs/behaviour.md, "Audio")."""
    if output_format != "mp4":
        raise InputError(
            f"audio needs output_format mp4, not {output_format}: a GIF has no sound, so ask for an MP4."
        )
    if gif_ping_pong:
        raise InputError(
            "audio cannot be used with gif_ping_pong: the animation follows the sound track, "
            "which does not play backwards, so set gif_ping_pong to false."
        )
