"""What the walk tells its caller while it runs, and where the caller can stop it.

animate.animate takes one Progress and calls it at fixed points, as diffusers' pipelines
call `callback_on_step_end` (see docs/behaviour.md, "Seeds, logs and progress"):

- `with progress.stage(name):` around the work of a stage, `name` one of STAGES. A stage
  may be entered many times (once per keyframe batch, once per chunk of frames) and its
  time adds up. A stage entered inside another is not counted in the enclosing one: the
  frames are made inside "encode", whose encoder runs in a thread alongside, so "encode"
  is the time encoding adds beyond making the frames.
- `progress.step(name, done, total, detail)`: `done` of `total` units of a stage are done
  (denoising steps, counted in the user's num_inference_steps; frames). It comes before
  every denoising step and every FILM call, and after every frame, and it may raise to
  stop the walk there: a cancel takes effect within one denoising step or one FILM call.
  The same numbers can come more than once (one frame may take several FILM calls).
  With `upscale`, it also comes before every batch of frames the upscaler takes.
- `progress.keyframes_decoded(start, latents, images, total)`: once per run of keyframes
  whose place in the walk is final, decoded and safety-checked, in walk order (with linear
  pacing, once per keyframe batch).
- `progress.frames_made(pictures)`: each chunk of the animation's frames, in order, as
  they go on to the encoder (before ping-pong); the tests and the benchmark measure them.

The base class prints one line per event on stdout, `[   12.3s] <stage>: <detail>` or
`[   12.3s] <stage> took 2.1 s`, with the seconds since it was made (the walk's start).
Subclass it to time the walk or to stop it: bench.runner and the tests do.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

# The stages of the walk, in its order (and the benchmark table's). "upscale" runs only when
# the request upscales.
STAGES = ("text", "shared_denoise", "keyframe_denoise", "decode", "inbetweens", "upscale", "encode")
# What the log calls each stage.
STAGE_WORDS = {
    "text": "text",
    "shared_denoise": "shared start",
    "keyframe_denoise": "keyframes",
    "decode": "decode",
    "inbetweens": "in-betweens",
    "upscale": "upscaling",
    "encode": "encoding",
}
# The stages whose steps count frames, not denoising steps.
FRAME_STAGES = ("inbetweens", "upscale")
# Frame progress lines per animation, at most (and one for the last frame).
FRAME_LINES = 10


@dataclass
class OpenStage:
    """A stage the walk is in: when it entered (by Progress.now), and the seconds of the
    stages entered inside it since, at any depth, each stage's own time, by name."""

    entered: float
    nested: dict[str, float] = field(default_factory=dict)


class Progress:
    """The walk's progress, printed on stdout (flushed): the server's log and `make demo` show it.

    `seconds` holds each stage's time so far, summed over its entries, without the stages
    nested in it. The walk enters stages from one thread.
    """

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.seconds: dict[str, float] = {}
        self.open_stages: list[OpenStage] = []
        self.last_lines: dict[str, str] = {}  # stage -> its last step line, not printed twice

    def now(self) -> float:
        """The clock stages are timed by, in seconds (bench.runner waits for the GPU first)."""
        return time.perf_counter()

    def log(self, subject: str, detail: str) -> None:
        """Print `[   12.3s] subject: detail`."""
        self.print_line(f"{subject}: {detail}")

    def print_line(self, text: str) -> None:
        """Print `[   12.3s] text`, with the seconds since this object was made."""
        print(f"[{time.perf_counter() - self.started:7.1f}s] {text}", flush=True)

    @contextmanager
    def stage(self, name: str, detail: str = "") -> Iterator[None]:
        """Time the block as stage `name`, less the stages nested in it. When it ends, unless
        it is nested itself, print "<stage> took N s (detail)", after one such line per stage
        nested in it at any depth (its own time in it, summed). A block that raises is not
        counted."""
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}: the stages are {', '.join(STAGES)}")
        opened = OpenStage(self.now())
        self.open_stages.append(opened)
        try:
            yield
        finally:
            self.open_stages.pop()
        elapsed = self.now() - opened.entered
        own = elapsed - sum(opened.nested.values())
        self.seconds[name] = self.seconds.get(name, 0.0) + own
        if self.open_stages:
            # The enclosing stage's nested times: this one's own and those nested in it, so
            # that they add up to this one's elapsed time (upscaling runs inside the in-betweens'
            # stage, inside encoding's).
            enclosing = self.open_stages[-1].nested
            for inner, seconds in [(name, own), *opened.nested.items()]:
                enclosing[inner] = enclosing.get(inner, 0.0) + seconds
            return
        for inner, seconds in opened.nested.items():
            self.log_took(inner, seconds, "")
        self.log_took(name, own, detail)

    def log_took(self, name: str, seconds: float, detail: str) -> None:
        """`[   12.3s] <stage> took 2.1 s (detail)`: how long a stage took."""
        suffix = f" ({detail})" if detail else ""
        self.print_line(f"{STAGE_WORDS[name]} took {seconds:.1f} s{suffix}")

    def step(self, name: str, done: int, total: int, detail: str = "") -> None:
        """`done` of `total` units of stage `name` are done; may raise to stop the walk.

        Logs "step 12/40, <detail>" for denoising, and "23/46 frames (<detail>)" for the
        in-betweens and upscaling at most FRAME_LINES times and at the last frame; a line the
        same as the stage's last is not printed again.
        """
        if name in FRAME_STAGES:
            every = max(1, total // FRAME_LINES)
            if done == 0 or (done % every and done != total):
                return
            line = f"{done}/{total} frames" + (f" ({detail})" if detail else "")
        else:
            line = f"step {done}/{total}" + (f", {detail}" if detail else "")
        if self.last_lines.get(name) != line:
            self.last_lines[name] = line
            self.log(STAGE_WORDS[name], line)

    def keyframes_decoded(self, start: int, latents: torch.Tensor, images: torch.Tensor, total: int) -> None:
        """Keyframes start .. start + B - 1 of `total` (walk indices) are decoded and
        safety-checked, and so is every keyframe before them: latents (B, 4, h, w), images
        (B, 3, H, W) in [0, 1]."""
        self.log(STAGE_WORDS["keyframe_denoise"], f"{start + latents.shape[0]}/{total} done")

    def frames_made(self, pictures: np.ndarray) -> None:
        """The animation's next frames, uint8 (B, H, W, 3), are made; nothing is logged."""
