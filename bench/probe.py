"""Stage times and keyframes of the project's pipeline, read from outside it.

animate.pipeline calls its stages through names in its own module (encode_prompts,
shared_denoise, denoise_keyframes, decode_latents, animation_frames, encode_animation).
While `probing` is active those names are wrapped: each call, or each step of a returned
iterator, is timed under a stage of measure.STAGES, and the keyframes the pipeline decodes
are kept for the comparison with the reference. The pipeline's code is not changed, and a
renamed stage fails here loudly instead of being silently missed.
"""

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from unittest import mock

import torch

import animate.pipeline as pipeline
from bench.measure import STAGES, StageClock


@dataclass
class PipelineCapture:
    """Per keyframe decode call: latents (B, 4, h, w) and images (B, 3, H, W), float32 on the CPU."""

    keyframe_latents: list[torch.Tensor] = field(default_factory=list)
    keyframes: list[torch.Tensor] = field(default_factory=list)


def timed_call(clock: StageClock, stage: str, function):
    """`function`, with every call timed as `stage`."""

    def wrapper(*args, **kwargs):
        with clock.stage(stage):
            return function(*args, **kwargs)

    return wrapper


def timed_steps(clock: StageClock, stage: str, iterator) -> Iterator:
    """Yield from `iterator`, timing the work of producing each item as `stage`."""
    iterator = iter(iterator)
    while True:
        with clock.stage(stage):
            try:
                item = next(iterator)
            except StopIteration:
                return
        yield item


def timed_iterator_call(clock: StageClock, stage: str, function):
    """`function` returning an iterator (or generator), with the iteration timed as `stage`."""

    def wrapper(*args, **kwargs):
        return timed_steps(clock, stage, function(*args, **kwargs))

    return wrapper


def capturing_decode(clock: StageClock, capture: PipelineCapture | None, function):
    """The keyframe decode, timed as "decode"; when `capture` is given, its latents and
    images are copied there after the timed part."""

    def wrapper(vae, latents, *args, **kwargs):
        with clock.stage("decode"):
            images = function(vae, latents, *args, **kwargs)
        if capture is not None:
            capture.keyframe_latents.append(latents.float().cpu())
            capture.keyframes.append(images.float().cpu())
        return images

    return wrapper


def encode_without_frames(clock: StageClock, function):
    """The encoder call, timed as "encode" less the time spent making in-between frames
    meanwhile (timed as "inbetweens" by the frame iterator, in whichever thread pulls it).

    When the encoder pulls the frames itself, that is its own time; when it runs in a thread
    of its own alongside the frame making (as the pipeline's does), it is the time encoding
    adds to the wall clock beyond the frames, not ffmpeg's whole work."""

    def wrapper(*args, **kwargs):
        before = clock.seconds.get("inbetweens", 0.0)
        whole = StageClock(clock.device)
        with clock.memory_of("encode"), whole.stage("encode"):
            result = function(*args, **kwargs)
        pulled = clock.seconds.get("inbetweens", 0.0) - before
        clock.add("encode", whole.seconds["encode"] - pulled)
        return result

    return wrapper


@contextmanager
def probing(clock: StageClock, keep_keyframes: bool) -> Iterator[PipelineCapture]:
    """Within the block, animate.animate's stages are timed into `clock`; yields the capture,
    which holds the decoded keyframes when keep_keyframes is true and stays empty otherwise."""
    capture = PipelineCapture()
    wrappers = {
        "encode_prompts": timed_call(clock, "text", pipeline.encode_prompts),
        "keyframe_embeddings": timed_call(clock, "text", pipeline.keyframe_embeddings),
        "walk_embedding": timed_call(clock, "text", pipeline.walk_embedding),
        "shared_denoise": timed_call(clock, "shared_denoise", pipeline.shared_denoise),
        "denoise_keyframes": timed_iterator_call(clock, "keyframe_denoise", pipeline.denoise_keyframes),
        "decode_latents": capturing_decode(clock, capture if keep_keyframes else None, pipeline.decode_latents),
        "animation_frames": timed_iterator_call(clock, "inbetweens", pipeline.animation_frames),
        "encode_animation": encode_without_frames(clock, pipeline.encode_animation),
    }
    with ExitStack() as stack:
        for name, wrapper in wrappers.items():
            stack.enter_context(mock.patch.object(pipeline, name, wrapper))
        yield capture
    check_every_stage_seen(clock)
    if keep_keyframes and not capture.keyframes:
        raise RuntimeError(
            "The probe saw no keyframe decode, so animate.pipeline no longer calls decode_latents "
            "for its keyframes: update the wrappers in bench/probe.py."
        )


def check_every_stage_seen(clock: StageClock) -> None:
    """Raises RuntimeError when a stage was never timed: the pipeline changed under the probe."""
    missing = [stage for stage in STAGES if stage not in clock.seconds]
    if missing:
        raise RuntimeError(
            f"The probe timed no {', '.join(missing)} stage, so animate.pipeline no longer calls "
            "the functions bench/probe.py wraps: update its wrappers."
        )
