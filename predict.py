"""Cog predictor: the public inputs of the hosted model, turned into one call of `animate`.

setup() loads the weights once; predict() declares the 15 inputs of the hosted model's
public API, in its order, then nine of this package's own (negative_prompt, init_image,
scheduler, disable_safety_checker, audio, audio_pace_strength, loop, pacing, upscale,
whose defaults change nothing), and streams the files `animate.animate` yields.

`cog build` writes the deployed input schema by reading this file's text, not by importing
it, and it understands only literals: so every `Input(...)` keyword below is ONE literal
(one string per description, bounds as plain numbers). A name, arithmetic or a description
split into adjacent string pieces would silently change the deployed schema;
tests/test_predict_source.py refuses them, and ties the defaults to animate.inputs.settings.
"""

import atexit
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path as LocalPath
from typing import Iterator, Optional

import torch
from cog import BasePredictor, Input, Path

import animate

REPO_ROOT = LocalPath(__file__).resolve().parent


def weights_dir() -> LocalPath:
    """The weights directory: $ANIMATE_WEIGHTS when set, else weights/ beside this file."""
    return LocalPath(os.environ.get("ANIMATE_WEIGHTS") or REPO_ROOT / "weights")


def pick_device() -> tuple[torch.device, torch.dtype]:
    """CUDA in fp16 when there is a GPU (production), else CPU in fp32 (tests, the demo)."""
    if torch.cuda.is_available():
        return torch.device("cuda"), torch.float16
    return torch.device("cpu"), torch.float32


class Predictor(BasePredictor):
    def setup(self) -> None:
        """Load the Stable Diffusion components and FILM once, and make the output base."""
        started = time.perf_counter()
        device, dtype = pick_device()
        directory = weights_dir()
        print(f"Loading weights from {directory} on {device} ({dtype})", flush=True)
        self.components = animate.load_components(directory, device, dtype)
        print(f"Checkpoint: {self.components.summary()}", flush=True)
        print(
            f"Loaded UNet, VAE, {self.components.text_models()}, scheduler "
            f"({type(self.components.scheduler).__name__}); "
            f"safety checker: {'yes' if self.components.safety_checker is not None else 'no'}; "
            f"FILM: {'yes' if self.components.film is not None else 'no'}",
            flush=True,
        )
        print(f"Upscaler: {animate.weights.upscaler_summary(self.components.upscaler, directory)}", flush=True)
        # One base per server process, so two servers on one machine never clean up
        # each other's files.
        self.output_base = LocalPath(tempfile.mkdtemp(prefix="animation-outputs-"))
        remove_when_the_process_ends(self.output_base)
        print(f"Outputs go to {self.output_base}", flush=True)
        print(f"Setup took {time.perf_counter() - started:.1f} s", flush=True)

    def predict(
        self,
        prompt_start: str = Input(description="Prompt to start the animation with"),
        prompt_end: str = Input(
            description="Prompt to end the animation with. You can include multiple prompts by separating the prompts with | (the 'pipe' character)"
        ),
        width: int = Input(
            description="Width of output image",
            choices=[128, 256, 512, 768, 1024],
            default=512,
        ),
        height: int = Input(
            description="Height of output image",
            choices=[128, 256, 512, 768],
            default=512,
        ),
        num_inference_steps: int = Input(
            description="Number of denoising steps", ge=1, le=500, default=50
        ),
        prompt_strength: float = Input(
            description="Lower prompt strength generates more coherent gifs, higher respects prompts more but can be jumpy",
            ge=0.0,
            le=1.0,
            default=0.8,
        ),
        num_animation_frames: int = Input(
            description="Number of frames to animate", ge=2, le=50, default=10
        ),
        num_interpolation_steps: int = Input(
            description="Number of steps to interpolate between animation frames",
            ge=1,
            le=50,
            default=5,
        ),
        guidance_scale: float = Input(
            description="Scale for classifier-free guidance", ge=1, le=20, default=7.5
        ),
        gif_frames_per_second: int = Input(
            description="Frames/second in output GIF", ge=1, le=50, default=20
        ),
        gif_ping_pong: bool = Input(
            description="Whether to reverse the animation and go back to the beginning before looping",
            default=False,
        ),
        film_interpolation: bool = Input(
            description="Whether to use FILM for between-frame interpolation (film-net.github.io)",
            default=True,
        ),
        intermediate_output: bool = Input(
            description="Whether to display intermediate outputs during generation",
            default=False,
        ),
        # Optional, not `int = Input(default=None)`: cog 0.23's schema makes a bare int with
        # a None default *required*, and the contract lets callers leave the seed out.
        # The bounds of torch.Generator.manual_seed, which the hosted model gave the seed to
        # (animate.inputs.settings.MIN_SEED, MAX_SEED). cog build writes them through float64,
        # so the deployed maximum is 2**64 and predict() refuses that one value itself.
        seed: Optional[int] = Input(
            description="Random seed. Leave blank to randomize the seed",
            default=None,
            ge=-9223372036854775808,
            le=18446744073709551615,
        ),
        output_format: str = Input(
            description="Output file format", choices=["gif", "mp4"], default="gif"
        ),
        # Beyond the hosted model's inputs (docs/behaviour.md, "Inputs and validation").
        negative_prompt: str = Input(
            description="Things to keep out of every frame, such as 'blurry, text'; leave empty for none",
            default="",
        ),
        # Optional with a None default: cog writes it as a nullable, not required file (a
        # URL or data URI that the server fetches into a file before predict() runs).
        init_image: Optional[Path] = Input(
            description="Picture to start the animation from instead of random noise; prompt_strength sets how far the frames may move away from it",
            default=None,
        ),
        scheduler: str = Input(
            description="Sampler for the denoising steps; default is the one the weights come with",
            choices=["default", "DDIM", "DPMSolverMultistep", "K_EULER", "K_EULER_ANCESTRAL", "KLMS", "PNDM"],
            default="default",
        ),
        disable_safety_checker: bool = Input(
            description="Skip the check that fails the prediction when a keyframe may be not safe for work",
            default=False,
        ),
        # A URL or data URI the server fetches into a file, like init_image.
        audio: Optional[Path] = Input(
            description="Sound track (MP3, WAV, FLAC, OGG, M4A, or a video with sound) of at most 300 seconds: the animation lasts as long, its keyframes follow the music, and the MP4 plays it; needs output_format mp4",
            default=None,
        ),
        audio_pace_strength: float = Input(
            description="With audio, how strongly the music's intensity sets the pace of the walk: 0 keeps an even pace, 1 lets the music alone place the keyframes",
            ge=0.0,
            le=1.0,
            default=0.5,
        ),
        loop: bool = Input(
            description="Walk on from the last prompt back to the first, so the animation loops without a seam; not with gif_ping_pong",
            default=False,
        ),
        pacing: str = Input(
            description="Where keyframes go: linear spaces them evenly along the walk between prompts; even places them and their frames so the picture changes by about the same amount from frame to frame",
            choices=["linear", "even"],
            default="linear",
        ),
        upscale: str = Input(
            description="Upscale every frame, and the keyframe images, 2x or 4x with Real-ESRGAN; an upscaled frame may have at most 9,437,184 pixels (4096x2304)",
            choices=["none", "2x", "4x"],
            default="none",
        ),
    ) -> Iterator[Path]:
        """Yield one PNG per keyframe (with intermediate_output), then the animation."""
        settings = animate.settings_from_inputs(
            prompt_start=prompt_start,
            prompt_end=prompt_end,
            width=width,
            height=height,
            num_inference_steps=num_inference_steps,
            prompt_strength=prompt_strength,
            num_animation_frames=num_animation_frames,
            num_interpolation_steps=num_interpolation_steps,
            guidance_scale=guidance_scale,
            gif_frames_per_second=gif_frames_per_second,
            gif_ping_pong=gif_ping_pong,
            film_interpolation=film_interpolation,
            intermediate_output=intermediate_output,
            seed=seed,
            output_format=output_format,
            negative_prompt=negative_prompt,
            init_image=downloaded(init_image, "init_image", "a picture"),
            scheduler=scheduler,
            disable_safety_checker=disable_safety_checker,
            audio=downloaded(audio, "audio", "a sound file"),
            audio_pace_strength=audio_pace_strength,
            loop=loop,
            pacing=pacing,
            upscale=upscale,
        )
        output_dir = self.fresh_output_dir()
        for path in animate.animate(self.components, settings, output_dir):
            yield Path(path)

    def fresh_output_dir(self) -> LocalPath:
        """An empty directory for this prediction, after removing earlier predictions' ones.

        The server reads yielded files lazily, so a prediction's files stay on disk until
        the next prediction starts, by which time the server has sent them.
        """
        for earlier in self.output_base.iterdir():
            shutil.rmtree(earlier, ignore_errors=True)
        return LocalPath(tempfile.mkdtemp(prefix="prediction-", dir=self.output_base))


def downloaded(file: Optional[Path], name: str, what: str) -> Optional[LocalPath]:
    """The path of file input `name` (init_image, audio) when it is the file the server
    downloaded the request's URL into; `what` the input holds, for the error message.

    The server fetches an http(s) URL or a data URI into a new file directly in the
    temporary directory and passes that file's path; any other string (a path such as
    /etc/hostname, a file:// URL, "") it passes on unchanged as a path. Reading that would
    put a file of the server's into the animation, or tell the caller whether it exists,
    so it is refused before anything runs.
    """
    if file is None:
        return None
    path = LocalPath(file).resolve()
    if path.parent != LocalPath(tempfile.gettempdir()).resolve() or not path.is_file():
        raise animate.InputError(
            f"{name} must be an http or https URL or a data URI of {what}: "
            "the model reads only the file the server downloads."
        )
    return path


def remove_when_the_process_ends(directory: LocalPath) -> None:
    """Remove directory when this process ends: at a normal exit, and on SIGTERM or SIGINT.

    coglet ends its worker (the process that runs setup() and predict()) in one of two ways.
    When only the server is stopped, it asks the worker to shut down, and the worker exits
    normally, running atexit. When the whole process group is signalled (`kill -- -<pid>`,
    Ctrl-C, script/cog_server.stop), the worker gets the signal itself, and Python's default
    action ends it without atexit; so the handler removes the directory first and then
    hands the signal on to what was there before, and the process ends as it would have.
    """
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:  # never from a forked child
            shutil.rmtree(directory, ignore_errors=True)

    atexit.register(remove)
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may set signal handlers (coglet runs setup() there)
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        if previous is signal.SIG_DFL or callable(previous):
            signal.signal(signum, remove_then(remove, previous))


def remove_then(remove, previous):
    """A signal handler that calls remove(), then does what `previous` did with the signal."""

    def handler(signum, frame):
        remove()
        if callable(previous):
            previous(signum, frame)  # e.g. SIGINT's KeyboardInterrupt
        else:  # the default action: end the process as the signal would have
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    return handler
