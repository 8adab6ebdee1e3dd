"""The whole walk in half precision (docs/memory.md, "Half precision"), as production runs it
on CUDA, here on the CPU (which runs float16 and bfloat16, slowly) with the tiny weights.

For SD 1.x, SD 2.x and SDXL, float16 and bfloat16, FILM and latent in-betweens, with and
without init_image and negative_prompt, and one sampler of each family (PNDM, DDIM, an
ancestral one, DPM-Solver, KLMS), in a pairwise set of walks (every pair of choices is in
some walk; a test checks it), each walk checks:
- no NaN or infinite value comes out of any model (text encoders, UNet, VAE, FILM), so in
  no keyframe or frame;
- every tensor that crosses a stage boundary has the dtype the code gives it (BOUNDARIES);
- no NaN fallback is taken (the VAE's float32 retry is for a NaN, which these never give;
  a separate test shows it is taken when a half-precision decode does give NaN);
- the keyframes agree with the same walk in float32 within TOLERANCE.

ANIMATE_TEST_DEVICE=cuda runs the same tests on a GPU (make gpu-check does).
"""

import itertools
import os
import re

import pytest
import torch

from animate import animate
from animate.diffusion.vae import decode_latents
from animate.memory import StageBatches
from animate.progress import Progress
from animate.tiny import write_tiny_sd2_weights, write_tiny_sdxl_weights
from animate.weights import load_components
from tests.animate.diffusion.test_diffusion import picture_file
from tests.animate.test_pipeline import settings

DEVICE = os.environ.get("ANIMATE_TEST_DEVICE", "cpu")
HALF = {"float16": torch.float16, "bfloat16": torch.bfloat16}
# (largest, mean) |half - float32| allowed between decoded keyframes (values in [0, 1]).
# Measured on the CPU (torch 2.13, one thread) over these 15 walks, each in both dtypes:
# float16 largest 0.0045-0.045 (sd2 KLMS from an init image), mean 0.0005-0.0016; bfloat16
# largest 0.033-0.30 (the same walk), mean 0.0035-0.014: its 8-bit mantissa keeps about 3
# significant digits to float16's 4, and tiny random UNets amplify rounding over the steps.
# The tolerances are about twice the worst measured; a walk gone wrong (another picture,
# garbage) differs by a mean of 0.1 or more.
TOLERANCE = {torch.float16: (0.1, 0.004), torch.bfloat16: (0.5, 0.03)}

# The walks, pairwise: every two factors' values appear together in at least one walk.
FACTORS = {
    "kind": ("sd", "sd2", "sdxl"),
    "scheduler": ("PNDM", "DDIM", "K_EULER_ANCESTRAL", "DPMSolverMultistep", "KLMS"),
    "dtype": ("float16", "bfloat16"),
    "film": (True, False),
    "init_image": (False, True),
    "negative_prompt": (False, True),
}
WALKS = [
    ("sd", "PNDM", "float16", True, False, False),
    ("sd", "DDIM", "bfloat16", False, True, True),
    ("sd", "K_EULER_ANCESTRAL", "float16", True, True, True),
    ("sd", "DPMSolverMultistep", "bfloat16", False, False, False),
    ("sd", "KLMS", "float16", False, False, True),
    ("sd2", "PNDM", "bfloat16", True, True, False),
    ("sd2", "DDIM", "float16", True, False, False),
    ("sd2", "K_EULER_ANCESTRAL", "bfloat16", False, False, False),
    ("sd2", "DPMSolverMultistep", "float16", True, True, True),
    ("sd2", "KLMS", "bfloat16", True, True, False),
    ("sdxl", "PNDM", "float16", False, False, True),
    ("sdxl", "DDIM", "bfloat16", True, True, False),
    ("sdxl", "K_EULER_ANCESTRAL", "float16", True, False, False),
    ("sdxl", "DPMSolverMultistep", "float16", True, False, False),
    ("sdxl", "KLMS", "float16", True, False, False),
]


def walk_id(walk):
    kind, scheduler, dtype, film, init_image, negative = walk
    extras = ["film" if film else "latent"] + ["init"] * init_image + ["negative"] * negative
    return "-".join([kind, dtype, scheduler, *extras])


def test_the_walks_cover_every_pair_of_choices():
    names = list(FACTORS)
    for (first, second) in itertools.combinations(range(len(names)), 2):
        wanted = set(itertools.product(FACTORS[names[first]], FACTORS[names[second]]))
        covered = {(walk[first], walk[second]) for walk in WALKS}
        assert wanted <= covered, f"{names[first]} x {names[second]}: {sorted(wanted - covered, key=str)} missing"


@pytest.fixture(scope="module")
def weights(tiny_weights, tmp_path_factory):
    """The tiny weights of each kind."""
    folder = tmp_path_factory.mktemp("half-precision-weights")
    return {
        "sd": tiny_weights,
        "sd2": write_tiny_sd2_weights(folder / "sd2"),
        "sdxl": write_tiny_sdxl_weights(folder / "sdxl"),
    }


@pytest.fixture(scope="module")
def loaded(weights):
    """load(kind, dtype): the components of a kind in a dtype on DEVICE, each loaded once."""
    cache = {}

    def load(kind, dtype):
        if (kind, dtype) not in cache:
            cache[kind, dtype] = load_components(weights[kind], DEVICE, dtype)
        return cache[kind, dtype]

    return load


class Keyframes(Progress):
    """Keeps each decoded keyframe batch: (latents (B, 4, h, w), images (B, 3, H, W))."""

    def __init__(self):
        super().__init__()
        self.batches = []

    def keyframes_decoded(self, start, latents, images, total):
        super().keyframes_decoded(start, latents, images, total)
        self.batches.append((latents.clone(), images.clone()))


def floating_tensors(value):
    """Every floating-point tensor in a model's input or output (tensors, tuples, model outputs)."""
    if isinstance(value, torch.Tensor):
        return [value] if value.is_floating_point() else []
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [tensor for item in value for tensor in floating_tensors(item)]
    return []


def boundaries(components):
    """{name: (module, the dtype of what goes in and comes out)}: the models whose inputs
    and outputs cross a stage boundary, and the dtype the code gives them. The text
    encoders, UNet and FILM run in the components' dtype; the VAE in its own
    (animate.weights.vae_dtype: float32 for an SDXL VAE that asks to upcast in float16)."""
    models = {
        "text encoder": (components.text_encoder, components.dtype),
        "UNet": (components.unet, components.dtype),
        "VAE encoder": (components.vae.encoder, components.vae.dtype),
        "VAE decoder": (components.vae.decoder, components.vae.dtype),
        "FILM feature extractor": (components.film.feat_net, components.dtype),
        "FILM fusion": (components.film.fusion, components.dtype),
    }
    if components.text_encoder_2 is not None:
        models["second text encoder"] = (components.text_encoder_2, components.dtype)
    return models


class Watch:
    """Forward hooks on every model of `boundaries`: records (name, "in"/"out", dtype,
    finite) for each floating-point tensor going in and coming out. Hooks are PyTorch's
    own way to observe a module; nothing is replaced."""

    def __init__(self, components):
        self.records = []
        self.handles = []
        for name, (module, _) in boundaries(components).items():
            self.handles.append(module.register_forward_pre_hook(self.recorder(name, "in"), with_kwargs=True))
            self.handles.append(module.register_forward_hook(self.recorder(name, "out"), with_kwargs=True))

    def recorder(self, name, side):
        def record(module, args, kwargs, output=None):
            # Not the UNet's timestep (args[1]): a scalar schedulers keep in float32 or int64.
            value = (args[:1] if name == "UNet" else args, kwargs) if side == "in" else output
            for tensor in floating_tensors(value):
                self.records.append((name, side, tensor.dtype, bool(torch.isfinite(tensor).all())))

        return record

    def close(self):
        for handle in self.handles:
            handle.remove()


def run(components, tmp_path, walk):
    """The walk on components; (keyframe latents, keyframe images, model records, log)."""
    kind, scheduler, _, film, init_image, negative = walk
    inputs = dict(
        prompt_end="a blue boat", num_animation_frames=3, num_interpolation_steps=3, prompt_strength=0.5,
        scheduler=scheduler, film_interpolation=film, negative_prompt="blurry, dark" if negative else "",
        init_image=picture_file(tmp_path / "start.png") if init_image else None,
    )
    progress = Keyframes()
    watch = Watch(components)
    try:
        outputs = list(animate(components, settings(**inputs), tmp_path / str(components.dtype), progress=progress))
    finally:
        watch.close()
    assert [path.name for path in outputs] == ["animation.gif"]
    latents = torch.cat([latents for latents, _ in progress.batches])
    images = torch.cat([images for _, images in progress.batches])
    return latents, images, watch.records


@pytest.mark.parametrize("walk", WALKS, ids=[walk_id(walk) for walk in WALKS])
def test_the_walk_in_half_precision(loaded, tmp_path, capsys, walk):
    kind, _, dtype_name, film, init_image, _ = walk
    dtype = HALF[dtype_name]
    _, expected, _ = run(loaded(kind, torch.float32), tmp_path, walk)
    components = loaded(kind, dtype)
    capsys.readouterr()
    latents, images, records = run(components, tmp_path, walk)
    log = capsys.readouterr().out

    # Nothing out of range anywhere: every model's every output, so every keyframe and frame.
    assert all(finite for _, _, _, finite in records), sorted({(name, side) for name, side, _, ok in records if not ok})
    # The dtypes at the stage boundaries are the code's: the models' (BOUNDARIES), the
    # keyframe latents the UNet's, the decoded pictures float32 (the VAE's output upcast).
    expected_dtypes = {name: model_dtype for name, (_, model_dtype) in boundaries(components).items()}
    assert {(name, dtype_seen) for name, _, dtype_seen, _ in records} == {
        (name, expected_dtypes[name]) for name, _, _, _ in records
    }
    assert latents.dtype == dtype and images.dtype == torch.float32
    ran = {name for name, _, _, _ in records}
    assert ("VAE encoder" in ran) == init_image and ("FILM fusion" in ran) == film
    # No fallback taken: none is needed when nothing gave NaN.
    assert not re.search(r"gave NaN", log)
    # Close to the float32 walk (measured figures at TOLERANCE).
    difference = (images.float().cpu() - expected.float().cpu()).abs()
    largest, mean = TOLERANCE[dtype]
    assert difference.max() < largest and difference.mean() < mean, (
        f"keyframes differ from float32 by {difference.max():.4f} at most, {difference.mean():.5f} on average"
    )


@torch.inference_mode()
def test_the_vae_decodes_again_in_float32_exactly_when_a_float16_decode_gives_nan(loaded, capsys):
    """Latents 10^4 times their usual size overflow float16 inside the tiny VAE (NaN), not
    float32: the fallback is taken for them, and not for latents of the usual size."""
    components = loaded("sd", torch.float16)
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)).to(DEVICE, torch.float16)
    for scale, fallback in [(1, False), (1e4, True)]:
        images = decode_latents(components.vae, latents * scale, StageBatches("decode", 2))
        printed = capsys.readouterr().out
        assert ("VAE decode in torch.float16 gave NaN; decoding again in float32" in printed) == fallback
        assert images.dtype == torch.float32 and torch.isfinite(images).all()
        assert components.vae.dtype == torch.float16  # upcast only for the retry
