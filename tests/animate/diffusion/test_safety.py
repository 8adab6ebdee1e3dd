import shutil

import numpy as np
import pytest
import torch
from diffusers.pipelines.stable_diffusion.safety_checker import (
    StableDiffusionSafetyChecker,
)

from animate.diffusion.safety import UnsafeContentError, check_keyframes, flagged_images
from animate.weights import load_components


def images(count=3, seed=0):
    return torch.rand(count, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def embedding_of(checker, processor, image):
    pixels = processor([np.asarray((image * 255).round().to(torch.uint8).permute(1, 2, 0))], return_tensors="pt")
    with torch.no_grad():
        return checker.visual_projection(checker.vision_model(pixels.pixel_values)[1])[0]


def test_nothing_is_checked_without_a_checker():
    check_keyframes(None, None, images(), 0, 3)


def test_unflagged_keyframes_pass_and_are_left_untouched(make_safety_checker):
    checker, processor = make_safety_checker(threshold=2.0)  # a cosine never exceeds 2
    frames = images()
    before = frames.clone()
    assert flagged_images(checker, processor, frames) == [False, False, False]
    check_keyframes(checker, processor, frames, 0, 3)
    assert torch.equal(frames, before)


def test_flagged_keyframe_fails_with_its_number_and_what_to_do(make_safety_checker):
    checker, processor = make_safety_checker(threshold=0.999)
    frames = images()
    # Make one concept exactly the second image's embedding: only that image matches it.
    with torch.no_grad():
        checker.concept_embeds[0] = embedding_of(checker, processor, frames[1])
    assert flagged_images(checker, processor, frames) == [False, True, False]
    with pytest.raises(UnsafeContentError) as caught:
        check_keyframes(checker, processor, frames, first_index=4, num_keyframes=9)
    message = str(caught.value)
    assert "Keyframe 6 of 9" in message
    assert "change the prompts or the seed" in message
    assert message.count(".") == 1 and message.endswith(".")


def test_safety_checker_weights_are_loaded_when_present(tiny_weights, tmp_path, make_safety_checker):
    copy = shutil.copytree(tiny_weights, tmp_path / "weights")
    checker, processor = make_safety_checker(threshold=-2.0)  # flags everything
    checker.save_pretrained(copy / "stable-diffusion" / "safety_checker", safe_serialization=True)
    processor.save_pretrained(copy / "stable-diffusion" / "feature_extractor")
    components = load_components(copy, "cpu", torch.float32)
    assert isinstance(components.safety_checker, StableDiffusionSafetyChecker)
    assert components.feature_extractor is not None
    assert flagged_images(components.safety_checker, components.feature_extractor, images(2)) == [True, True]
