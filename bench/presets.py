"""The benchmark's presets: which models, on which device, for which request (each one
described in bench/__init__.py's docstring, which `python -m bench --help` shows).
"""

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

import film_net
from animate import Components, Settings, load_components
from animate.tiny import write_tiny_sdxl_weights, write_tiny_weights, write_tokenizer
from animate.weights import place_unet, place_vae, spandrel
from bench import sd15, sdxl

PROMPTS = (
    "monkeys in the desert looking at a tall black monolith, a detailed matte painting",
    "a white room in the future with a bed and a tall black monolith, a detailed matte painting",
)
SEED = 42

# The default request of the public API, with the benchmark's prompts and seed.
DEFAULT_REQUEST = Settings(prompts=PROMPTS, seed=SEED)


@dataclass(frozen=True)
class Preset:
    """models: "tiny", "tiny-sdxl", "sd15", "sd15-upscaler" or "sdxl"; compare: run the reference too (else
    the pipeline only); output_formats: one pipeline run per format when not comparing."""

    name: str
    models: str
    device: str
    dtype: torch.dtype
    settings: Settings
    compare: bool = True
    output_formats: tuple[str, ...] = ("gif",)
    threads: int | None = None  # torch intra-op threads; None leaves torch's default


# Three prompts, so the walk crosses a segment boundary.
TINY_REQUEST = dataclasses.replace(
    DEFAULT_REQUEST,
    prompts=(*PROMPTS, "a red fox in the snow"),
    width=128,
    height=128,
    num_inference_steps=10,
    num_animation_frames=4,
)

PRESETS = {
    "tiny": Preset(
        name="tiny",
        models="tiny",
        device="cpu",
        dtype=torch.float32,
        settings=TINY_REQUEST,
        # The tiny models' ops are too small to share between threads: with two, the
        # threads' synchronisation dominates, and stalls whenever other work uses a core.
        threads=1,
    ),
    "tiny-sdxl": Preset(
        name="tiny-sdxl",
        models="tiny-sdxl",
        device="cpu",
        dtype=torch.float32,
        settings=TINY_REQUEST,
        threads=1,
    ),
    "sd15-small": Preset(
        name="sd15-small",
        models="sd15",
        device="cpu",
        dtype=torch.float32,
        settings=dataclasses.replace(DEFAULT_REQUEST, width=256, height=256, num_inference_steps=10),
    ),
    "sd15-default": Preset(
        name="sd15-default",
        models="sd15",
        device="cuda",
        dtype=torch.float16,
        settings=DEFAULT_REQUEST,
    ),
    "sdxl": Preset(
        name="sdxl",
        models="sdxl",
        device="cuda",
        dtype=torch.float16,
        # SDXL is trained at about a megapixel; 1024x768 is the largest size the inputs allow.
        settings=dataclasses.replace(DEFAULT_REQUEST, width=1024, height=768),
    ),
    "sd15-upscale": Preset(
        name="sd15-upscale",
        models="sd15-upscaler",
        device="cuda",
        dtype=torch.float16,
        settings=dataclasses.replace(DEFAULT_REQUEST, upscale="4x"),
        compare=False,  # the reference, the original model, has no upscaling
        output_formats=("mp4", "gif"),
    ),
    "largest": Preset(
        name="largest",
        models="tiny",
        device="cpu",
        dtype=torch.float32,
        settings=dataclasses.replace(
            DEFAULT_REQUEST,
            width=1024,
            height=768,
            num_animation_frames=50,
            num_interpolation_steps=50,
            ping_pong=True,
        ),
        compare=False,
        output_formats=("mp4", "gif"),
    ),
}


def tiny_components(device: str, dtype: torch.dtype, write_weights=write_tiny_weights) -> Components:
    """The tiny weights (SD 1.x kind, or what `write_weights` writes), written to a
    temporary directory and loaded the production way."""
    with tempfile.TemporaryDirectory() as directory:
        write_weights(directory)
        return load_components(directory, device, dtype)


def placed(model: torch.nn.Module, device: str, dtype: torch.dtype) -> torch.nn.Module:
    """The float32 model moved to device, cast only when dtype differs (diffusers warns on
    every cast, even a no-op one)."""
    model = model.to(device)
    return model if dtype == torch.float32 else model.to(dtype)


def sd15_components(device: str, dtype: torch.dtype) -> Components:
    """SD 1.5's UNet, VAE and text encoder and the default FILM, all with random weights,
    with the tiny byte-level tokenizer (its ids fit SD's vocabulary). No safety checker."""
    with tempfile.TemporaryDirectory() as directory:
        tokenizer = write_tokenizer(Path(directory) / "tokenizer")
    text_encoder = sd15.random_text_encoder(tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    torch.manual_seed(sd15.WEIGHTS_SEED + 3)
    film = film_net.FilmNet().eval()
    return Components(
        tokenizer=tokenizer,
        text_encoder=placed(text_encoder, device, dtype),
        # Placed as load_components places the real ones, so the bench runs what predictions run.
        unet=place_unet(placed(sd15.random_unet(), device, dtype), torch.device(device)),
        vae=place_vae(placed(sd15.random_vae(), device, dtype), torch.device(device)),
        scheduler=sd15.sd15_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        film=placed(film, device, dtype),
        device=torch.device(device),
        dtype=dtype,
    )


def sdxl_components(device: str, dtype: torch.dtype) -> Components:
    """SDXL base's UNet, VAE and both text encoders and the default FILM, all with random
    weights, with the tiny byte-level tokenizers (their ids fit SDXL's vocabulary; the
    second pads with "!" as SDXL's does). No safety checker: SDXL base ships none."""
    with tempfile.TemporaryDirectory() as directory:
        tokenizer = write_tokenizer(Path(directory) / "tokenizer")
        tokenizer_2 = write_tokenizer(Path(directory) / "tokenizer_2", pad_token="!")
    text_encoder = sdxl.random_text_encoder(tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    text_encoder_2 = sdxl.random_text_encoder_2(
        tokenizer_2.bos_token_id, tokenizer_2.eos_token_id, tokenizer_2.pad_token_id
    )
    torch.manual_seed(sdxl.WEIGHTS_SEED + 4)
    film = film_net.FilmNet().eval()
    return Components(
        tokenizer=tokenizer,
        text_encoder=placed(text_encoder, device, dtype),
        unet=place_unet(placed(sdxl.random_unet(), device, dtype), torch.device(device)),
        vae=place_vae(placed(sdxl.random_vae(), device, dtype), torch.device(device)),
        scheduler=sdxl.sdxl_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        film=placed(film, device, dtype),
        device=torch.device(device),
        dtype=dtype,
        kind="sdxl",
        text_encoder_2=placed(text_encoder_2, device, dtype),
        tokenizer_2=tokenizer_2,
        force_zeros_for_empty_prompt=True,
    )


def random_upscaler(device: str, dtype: torch.dtype) -> spandrel.ImageModelDescriptor:
    """realesr-general-x4v3's architecture (Real-ESRGAN's SRVGGNetCompact: 64 features, 32
    convolutions, 4x) with random weights, loaded through spandrel as the real file is."""
    torch.manual_seed(sd15.WEIGHTS_SEED + 5)
    model = spandrel.architectures.Compact.Compact(num_feat=64, num_conv=32, upscale=4)
    upscaler = spandrel.ModelLoader(device).load_from_state_dict(model.state_dict())
    return upscaler.to(dtype).eval()


def build_components(preset: Preset) -> Components:
    """The preset's models on its device in its dtype."""
    if preset.models == "sd15-upscaler":
        components = sd15_components(preset.device, preset.dtype)
        return dataclasses.replace(components, upscaler=random_upscaler(preset.device, preset.dtype))
    if preset.models == "tiny":
        return tiny_components(preset.device, preset.dtype)
    if preset.models == "tiny-sdxl":
        return tiny_components(preset.device, preset.dtype, write_tiny_sdxl_weights)
    if preset.models == "sdxl":
        return sdxl_components(preset.device, preset.dtype)
    return sd15_components(preset.device, preset.dtype)
