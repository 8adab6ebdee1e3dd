"""film_net against outputs of the official TensorFlow model (tests/fixtures/film-golden)."""

import torch

from film_golden import max_error

# The README's bound for a faithful float32 implementation; 1e-2 or more is a semantic bug.
TOLERANCE = 1e-3


def test_image_and_flow_pyramids_match_official_128x192(golden_128x192):
    model = golden_128x192.model()
    with torch.inference_mode():
        outputs = model.predict(golden_128x192.nchw("x0"), golden_128x192.nchw("x1"))
        image = model(golden_128x192.nchw("x0"), golden_128x192.nchw("x1"))

    errors = {"image": max_error(outputs["image"], golden_128x192.nchw("image"))}
    for direction in ("forward", "backward"):
        for level, flow in enumerate(outputs[f"{direction}_flow_pyramid"]):
            key = f"{direction}_flow_pyramid_{level}"
            errors[key] = max_error(flow, golden_128x192.nchw(key))
    print("max abs errors, 128x192:", {key: f"{value:.2e}" for key, value in errors.items()})

    assert len(outputs["forward_flow_pyramid"]) == 5
    assert max(errors.values()) < TOLERANCE, errors
    # No padding at this size: forward() is predict() itself.
    assert torch.equal(image, outputs["image"])


def test_padded_batch_matches_official_96x160(golden_96x160):
    model = golden_96x160.model()
    with torch.inference_mode():
        image = model(golden_96x160.nchw("x0"), golden_96x160.nchw("x1"))
    error = max_error(image, golden_96x160.nchw("image"))
    print(f"max abs error, 96x160 padded, batch 2: image {error:.2e}")
    assert image.shape == (2, 3, 96, 160)
    assert error < TOLERANCE
