"""The batch sizes the walk chooses on GPUs of 16, 24, 40, 80 and 141 GB, for four requests,
with the memory each stage is estimated to take: python -m bench.memory

It prints the table of docs/memory.md ("Batch sizes by card"), computed by the functions the
walk sizes its batches with (animate.memory); tests/bench/test_memory_table.py checks that
the two are the same. Nothing runs on a GPU: a card's usable memory is modelled as its
memory less the checkpoint's weights in fp16 (parameters counted on the real architectures,
built on PyTorch's meta device, which allocates nothing) and CUDA_OVERHEAD, and, for FILM,
less the keyframes the walk holds by then. On a real card the walk measures it instead
(DeviceMemory.usable_bytes), and `make gpu-check` records what it measured.
"""

import argparse
import dataclasses
import sys
from dataclasses import dataclass

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from transformers import CLIPConfig, CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

import film_net
from animate import Settings
from animate.diffusion.denoise import uses_guidance
from animate.diffusion.vae import LATENT_CHANNELS, VAE_SCALE
from animate.memory import (
    decode_batch_size,
    decode_bytes,
    film_batch_size,
    film_bytes,
    keyframe_batch_size,
    keyframe_bytes,
)
from animate.pipeline import plan_for
from bench import sd15, sdxl
from bench.presets import DEFAULT_REQUEST, PRESETS

GIB = 1 << 30
MIB = 1 << 20
# The cards, by the memory they are sold with (in GiB here; a card reports a little less:
# a "16 GB" T4 15 GiB, a "141 GB" H200 about 139.8 GiB).
CARDS_GB = (16, 24, 40, 80, 141)
# The CUDA context, kernels and library workspaces (cuBLAS, cuDNN): an assumption, not a
# measurement; make gpu-check records the usable memory a real card reports after setup.
CUDA_OVERHEAD = GIB
HALF = 2  # bytes per value in fp16, as the walk runs on CUDA

# The safety checker SD 1.5 ships: CLIP ViT-L/14's vision tower and a projection.
SAFETY_CHECKER_VISION = dict(
    hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
    image_size=224, patch_size=14,
)


STAGES = ("keyframes", "decode", "FILM")
STAGE_LABELS = {
    "keyframes": "keyframes (UNet, both halves of guidance)",
    "decode": "decode (VAE)",
    "FILM": "FILM (pairs per call)",
}


@dataclass(frozen=True)
class Request:
    """A request of the table: what it is called, the checkpoint ("sd15" or "sdxl"), its
    settings, and which of STAGES the table shows for it."""

    name: str
    checkpoint: str
    settings: Settings
    stages: tuple[str, ...] = STAGES


REQUESTS = (
    Request("default request: SD 1.5, 512x512, 10 keyframes, S=5", "sd15", DEFAULT_REQUEST),
    Request("SDXL at 1024x768, 10 keyframes, S=5", "sdxl", PRESETS["sdxl"].settings),
    Request("largest request: SD 1.5, 1024x768, 50 keyframes, S=50", "sd15", PRESETS["largest"].settings),
    # Its keyframes and decode batches are the largest request's: the same size and checkpoint.
    Request(
        "FILM at 1024x768: SD 1.5, 10 keyframes, S=5", "sd15",
        dataclasses.replace(DEFAULT_REQUEST, width=1024, height=768), ("FILM",),
    ),
)


def parameters(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def checkpoint_parameters(checkpoint: str) -> int:
    """Parameters the walk keeps on the GPU for the checkpoint, FILM included: SD 1.5 with its
    safety checker, or SDXL base (no safety checker), both text encoders included."""
    with torch.device("meta"):
        film = parameters(film_net.FilmNet())
        text_encoder = parameters(CLIPTextModel(CLIPTextConfig(**sd15.TEXT_ENCODER_CONFIG)))
        if checkpoint == "sdxl":
            text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**sdxl.TEXT_ENCODER_2_CONFIG))
            unet = UNet2DConditionModel(**sdxl.UNET_CONFIG)
            return film + text_encoder + parameters(text_encoder_2) + parameters(unet) + parameters(
                AutoencoderKL(**sdxl.VAE_CONFIG)
            )
        checker = StableDiffusionSafetyChecker(CLIPConfig(vision_config=SAFETY_CHECKER_VISION, projection_dim=768))
        unet = UNet2DConditionModel(**sd15.UNET_CONFIG)
        return film + text_encoder + parameters(checker) + parameters(unet) + parameters(AutoencoderKL(**sd15.VAE_CONFIG))


def usable_after_setup(card_gb: int, weights_bytes: int) -> int:
    """The modelled usable bytes of a card once the weights are loaded."""
    return card_gb * GIB - weights_bytes - CUDA_OVERHEAD


def keyframes_held(settings: Settings) -> int:
    """Bytes of the keyframes the walk holds on the GPU while FILM runs: their latents (fp16),
    their decoded images (float32) and FILM's copy of those (fp16)."""
    count = plan_for(settings).num_keyframes
    pixels = settings.height * settings.width
    latents = LATENT_CHANNELS * pixels // (VAE_SCALE * VAE_SCALE) * HALF
    return count * (latents + 3 * pixels * (4 + HALF))


@dataclass(frozen=True)
class StageRow:
    """One stage of one request: the estimated bytes of one item and the batch per card."""

    request: str
    stage: str
    bytes_per_item: int
    batches: tuple[int, ...]


def chosen_batches(
    usable: int | None, usable_at_film: int | None, settings: Settings, element_sizes: dict[str, int]
) -> dict[str, int]:
    """{stage: the batch the walk chooses}: "keyframes" and "decode" from the bytes usable
    when the keyframes start, "FILM" from those usable when FILM starts. element_sizes:
    bytes per value of the UNet ("keyframes"), the VAE ("decode") and FILM ("FILM")."""
    height, width = settings.height, settings.width
    guided = uses_guidance(settings.guidance_scale)
    return {
        "keyframes": keyframe_batch_size(usable, height, width, guided, element_sizes["keyframes"]),
        "decode": decode_batch_size(usable, height, width, element_sizes["decode"]),
        "FILM": film_batch_size(
            usable_at_film, height, width, settings.num_interpolation_steps, element_sizes["FILM"]
        ),
    }


def request_rows(request: Request, weights_bytes: int) -> list[StageRow]:
    """The rows of one request's stages, in fp16 (latent in-betweens decode in batches of
    the decode row's size)."""
    settings = request.settings
    height, width = settings.height, settings.width
    per_item = {
        "keyframes": keyframe_bytes(height, width, uses_guidance(settings.guidance_scale), HALF),
        "decode": decode_bytes(height, width, HALF),
        "FILM": film_bytes(height, width, settings.num_interpolation_steps, HALF),
    }
    batches = []
    for card in CARDS_GB:
        usable = usable_after_setup(card, weights_bytes)
        batches.append(chosen_batches(usable, usable - keyframes_held(settings), settings, dict.fromkeys(STAGES, HALF)))
    return [
        StageRow(request.name, STAGE_LABELS[stage], per_item[stage], tuple(chosen[stage] for chosen in batches))
        for stage in request.stages
    ]


def batch_table() -> tuple[dict[str, int], list[StageRow]]:
    """({checkpoint: bytes of its weights in fp16}, the rows of every request)."""
    weights = {checkpoint: checkpoint_parameters(checkpoint) * HALF for checkpoint in ("sd15", "sdxl")}
    rows = [row for request in REQUESTS for row in request_rows(request, weights[request.checkpoint])]
    return weights, rows


def size(bytes_: int) -> str:
    """2.5 GiB, or 384 MiB below a GiB."""
    return f"{bytes_ / GIB:.1f} GiB" if bytes_ >= GIB else f"{bytes_ / MIB:.0f} MiB"


def markdown(weights: dict[str, int], rows: list[StageRow]) -> str:
    """The table of docs/memory.md: per card, the batch and the memory it is estimated to take."""
    header = "| request | stage | one item | " + " | ".join(f"{card} GB" for card in CARDS_GB) + " |"
    lines = [header, "| --- | --- | --- | " + " | ".join("---" for _ in CARDS_GB) + " |"]
    for checkpoint, name in (("sd15", "SD 1.5"), ("sdxl", "SDXL")):
        usable = " | ".join(size(usable_after_setup(card, weights[checkpoint])) for card in CARDS_GB)
        lines.append(f"| usable after setup, {name} ({size(weights[checkpoint])} of weights) | | | {usable} |")
    previous = None
    for row in rows:
        cells = " | ".join(f"{batch} ({size(batch * row.bytes_per_item)})" for batch in row.batches)
        request = row.request if row.request != previous else ""  # once per request
        previous = row.request
        lines.append(f"| {request} | {row.stage} | {size(row.bytes_per_item)} | {cells} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__).parse_args(argv)
    print(markdown(*batch_table()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
