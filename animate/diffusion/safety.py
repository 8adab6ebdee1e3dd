"""The safety check of keyframes (docs/behaviour.md, "The walk"), with diffusers' checker."""

import torch
from diffusers.pipelines.stable_diffusion.safety_checker import (
    StableDiffusionSafetyChecker,
)
from transformers import CLIPImageProcessorPil

from animate.frames.host import to_uint8
from animate.memory import WHOLE, StageBatches


class UnsafeContentError(RuntimeError):
    """A keyframe was flagged; the message says which and what to do."""


def flagged_images(
    safety_checker: StableDiffusionSafetyChecker,
    feature_extractor: CLIPImageProcessorPil,
    images: torch.Tensor,
) -> list[bool]:
    """One flag per image (B, 3, H, W) in [0, 1]: True where the checker finds NSFW content.

    The processor gets the same uint8 pictures diffusers gives it (PIL-equivalent arrays);
    the checker gets a throwaway copy because it blacks out flagged images in place.
    """
    pictures = list(to_uint8(images))
    inputs = feature_extractor(pictures, return_tensors="pt")
    clip_input = inputs.pixel_values.to(safety_checker.device, safety_checker.dtype)
    _, flags = safety_checker(clip_input=clip_input, images=[p.copy() for p in pictures])
    return [bool(flag) for flag in flags]


def check_keyframes(
    safety_checker: StableDiffusionSafetyChecker | None,
    feature_extractor: CLIPImageProcessorPil | None,
    images: torch.Tensor,
    first_index: int,
    num_keyframes: int,
    batches: StageBatches | None = None,
) -> None:
    """Raise UnsafeContentError if any keyframe image (B, 3, H, W) is flagged.

    first_index is the walk index of images[0]; nothing is checked without a checker.
    `batches` (stage "safety check", all B images by default) splits the checker's call
    when it runs out of memory.
    """
    if safety_checker is None:
        return
    batches = StageBatches("safety check", WHOLE) if batches is None else batches
    checked = batches.over(
        images.shape[0], lambda start, stop: flagged_images(safety_checker, feature_extractor, images[start:stop])
    )
    flags = [flag for _, _, batch_flags in checked for flag in batch_flags]
    for offset, flagged in enumerate(flags):
        if flagged:
            number = first_index + offset + 1
            raise UnsafeContentError(
                f"Keyframe {number} of {num_keyframes} was flagged by the safety checker as "
                f"possibly not safe for work: change the prompts or the seed and try again."
            )
