"""Load the models of the walk from a local weights directory, never from the network.

Layout (the same for real and tiny weights):
    <weights_dir>/stable-diffusion/   diffusers layout: model_index.json, unet/, vae/,
                                      text_encoder/, tokenizer/, scheduler/,
                                      [safety_checker/, feature_extractor/],
                                      and for SDXL text_encoder_2/, tokenizer_2/
    <weights_dir>/film_net/film_net_style.safetensors
    <weights_dir>/upscaler/realesr-general-x4v3.pth   optional: the `upscale` input's model

model_index.json's `_class_name` says the kind: StableDiffusionPipeline (SD 1.x and 2.x;
epsilon or v-prediction, as scheduler_config.json says) or StableDiffusionXLPipeline (SDXL
base: a second text encoder with a projection, whose pooled embedding and the image sizes
condition the UNet besides the per-token embeddings of both encoders).
"""

import importlib.util
import json
import logging
import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path


def go_offline() -> None:
    """Make the Hugging Face libraries never reach the network, even to check for updates.

    The environment variables cover libraries imported later (and subprocesses). The hub
    library reads them once, at its import, so when it was imported before this module
    (by a caller, a test, the server) its flags are set directly as well; diffusers copies
    them into some of its modules at import, and those copies are set too.
    (local_files_only below says the same per call.)
    """
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "DIFFUSERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        os.environ[name] = "1"
    import huggingface_hub.constants

    huggingface_hub.constants.HF_HUB_OFFLINE = True
    huggingface_hub.constants.HF_HUB_DISABLE_TELEMETRY = True
    for module_name in ("diffusers.utils.hub_utils", "diffusers.loaders.lora_base", "diffusers.models.attention_dispatch"):
        module = sys.modules.get(module_name)
        if module is not None and hasattr(module, "HF_HUB_OFFLINE"):
            module.HF_HUB_OFFLINE = True


def quiet_torchvision_fallback() -> None:
    """Drop transformers' notice that an image processor "requires torchvision" and falls
    back to its PIL version.

    Importing diffusers' pipelines (animate.tiny does, to write the weights layout) asks
    transformers for CLIPImageProcessor and SiglipImageProcessor, which in transformers 5
    are the torchvision versions; torchvision is not a dependency here, so transformers
    hands out the PIL versions, the ones the safety check uses anyway (load_safety_checker),
    and logs that notice on every run. Only that message is dropped, at the logger that
    writes it.
    """
    logging.getLogger("transformers.utils.import_utils").addFilter(
        lambda record: "requires torchvision (not installed)" not in record.getMessage()
    )


class TorchvisionMissing:
    """A name spandrel imports from torchvision.transforms.functional, standing in for it.

    Only two of spandrel's architectures use these names (RestoreFormer's normalize, LaMa's
    rotate and InterpolationMode), when they run; this package loads neither. Calling one,
    or reading one of its attributes, raises an error that says so.
    """

    def __init__(self, name: str) -> None:
        self.message = (
            f"torchvision.transforms.functional.{name} is not available: torchvision is not installed, "
            "and this package runs only upscalers that do not need it (such as Real-ESRGAN's)"
        )

    def __call__(self, *args, **kwargs):
        raise RuntimeError(self.message)

    def __getattr__(self, attribute: str):
        raise AttributeError(self.message)


def import_spandrel() -> types.ModuleType:
    """spandrel, imported with stand-ins for the torchvision names it imports when torchvision
    is not installed (docs/deploying.md, "spandrel without torchvision").

    spandrel declares torchvision as a dependency, and importing it imports every
    architecture, two of which import from torchvision. This package never installs
    torchvision: there is no build of it for the CPU torch the tests run, and an installed
    one that cannot load would make transformers pick image processors that need it. So
    spandrel is installed without its dependencies, and while it is imported, modules named
    torchvision, torchvision.transforms and torchvision.transforms.functional (holding
    TorchvisionMissing names) stand in; they are taken out of sys.modules again at once, so
    nothing else ever sees a torchvision.
    """
    if "spandrel" in sys.modules or importlib.util.find_spec("torchvision") is not None:
        import spandrel

        return spandrel
    functional = types.ModuleType("torchvision.transforms.functional")
    for name in ("InterpolationMode", "normalize", "rotate"):
        setattr(functional, name, TorchvisionMissing(name))
    transforms = types.ModuleType("torchvision.transforms")
    transforms.functional = functional
    torchvision = types.ModuleType("torchvision")
    torchvision.transforms = transforms
    stand_ins = {module.__name__: module for module in (torchvision, transforms, functional)}
    sys.modules.update(stand_ins)
    try:
        import spandrel
    finally:
        for name in stand_ins:
            sys.modules.pop(name, None)
    return spandrel


# Before diffusers and transformers are imported below, so that they start offline and quiet.
go_offline()
quiet_torchvision_fallback()
spandrel = import_spandrel()

import diffusers  # noqa: E402
import torch  # noqa: E402
from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402
from diffusers.pipelines.stable_diffusion.safety_checker import (  # noqa: E402
    StableDiffusionSafetyChecker,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin  # noqa: E402
from safetensors import safe_open  # noqa: E402
from transformers import (  # noqa: E402
    CLIPImageProcessorPil,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
)

import film_net  # noqa: E402
from animate.memory import DeviceMemory  # noqa: E402

STABLE_DIFFUSION_DIR = "stable-diffusion"
FILM_FILE = Path("film_net") / "film_net_style.safetensors"
# Real-ESRGAN's compact general model (SRVGGNetCompact, 4x), as its release names it; optional.
UPSCALER_FILE = Path("upscaler") / "realesr-general-x4v3.pth"
# What the upscaler must do: 4x (2x is its output scaled down), RGB in and out.
UPSCALER_SCALE = 4
UPSCALER_CHANNELS = 3
HOW_TO_GET_WEIGHTS = (
    "run script/download-weights, or build tiny test weights with "
    "`python -m animate.tiny weights/tiny` and set ANIMATE_WEIGHTS=weights/tiny"
)


# The pipeline classes of model_index.json this package runs, and the kind each one is.
KINDS = {"StableDiffusionPipeline": "sd", "StableDiffusionXLPipeline": "sdxl"}
KIND_NAMES = {"sd": "Stable Diffusion 1.x/2.x", "sdxl": "SDXL"}

# How much of a library's error message a WeightsError quotes (some list every tensor).
ERROR_DETAIL_CHARS = 200


class WeightsError(RuntimeError):
    """Weights are missing or unreadable; the message names the path and the fix."""


def describe(error: BaseException) -> str:
    """A library error as one short line: its type and the start of its message."""
    text = " ".join(str(error).split())
    if len(text) > ERROR_DETAIL_CHARS:
        text = text[:ERROR_DETAIL_CHARS] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@dataclass
class Components:
    """Everything the walk runs, loaded once per process by setup() and shared by every prediction.

    kind: "sd" (SD 1.x/2.x) or "sdxl", from model_index.json. text_encoder_2 and
    tokenizer_2 are SDXL's second encoder and its tokenizer (None for "sd").
    force_zeros_for_empty_prompt: SDXL's rule (model_index.json) that an empty negative
    prompt is zero embeddings rather than the embeddings of "".
    memory: the device's memory, as the walk sizes its batches by it and recovers when one
    does not fit (animate.memory); by default the real one of `device`.
    upscaler: the `upscale` input's 4x model (load_upscaler), None when its file is missing.
    """

    tokenizer: CLIPTokenizer
    text_encoder: CLIPTextModel
    unet: UNet2DConditionModel
    vae: AutoencoderKL
    scheduler: SchedulerMixin
    safety_checker: StableDiffusionSafetyChecker | None
    feature_extractor: CLIPImageProcessorPil | None
    film: film_net.FilmNet | None
    device: torch.device
    dtype: torch.dtype
    kind: str = "sd"
    text_encoder_2: CLIPTextModelWithProjection | None = None
    tokenizer_2: CLIPTokenizer | None = None
    force_zeros_for_empty_prompt: bool = False
    upscaler: spandrel.ImageModelDescriptor | None = None
    memory: DeviceMemory | None = None

    def __post_init__(self) -> None:
        if self.memory is None:
            self.memory = DeviceMemory(self.device)

    def summary(self) -> str:
        """What was loaded, for setup's log: e.g. "SDXL (StableDiffusionXLPipeline), prediction type epsilon"."""
        class_name = next(name for name, kind in KINDS.items() if kind == self.kind)
        prediction = self.scheduler.config.get("prediction_type", "epsilon")
        return f"{KIND_NAMES[self.kind]} ({class_name}), prediction type {prediction}"

    def text_models(self) -> str:
        """The text side, for setup's log: "CLIP text encoder, tokenizer", or SDXL's two of each."""
        if self.kind == "sdxl":
            classes = f"{type(self.text_encoder).__name__}, {type(self.text_encoder_2).__name__}"
            return f"two CLIP text encoders ({classes}) and their two tokenizers"
        return "CLIP text encoder, tokenizer"


def require(path: Path) -> Path:
    """Return path, or raise WeightsError naming it and how to get the weights."""
    if not path.exists():
        raise WeightsError(f"Model weights not found at {path}: {HOW_TO_GET_WEIGHTS}.")
    return path


def weight_file(folder: Path, stem: str) -> tuple[Path, str | None]:
    """The safetensors file of a component folder and its diffusers variant.

    Prefers `<stem>.fp16.safetensors` (what script/download-weights fetches) over
    `<stem>.safetensors`; raises WeightsError naming the folder when it is missing, else
    the file, when neither exists.
    """
    require(folder)
    require(folder / "config.json")
    half = folder / f"{stem}.fp16.safetensors"
    if half.exists():
        return half, "fp16"
    return require(folder / f"{stem}.safetensors"), None


def check_safetensors(path: Path) -> None:
    """Open the file: safetensors checks that its header covers the file exactly, so a
    truncated or foreign file fails here with its name instead of deep inside a loader."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            handle.keys()
    except Exception as error:  # safetensors raises its own error types for bad files
        raise WeightsError(
            f"Model weights file {path} is corrupt or truncated ({describe(error)}): "
            f"delete it and fetch it again ({HOW_TO_GET_WEIGHTS})."
        ) from error


def load_model(model_class, folder: Path, stem: str, dtype: torch.dtype):
    """from_pretrained of one diffusers/transformers model folder, offline, in dtype."""
    path, variant = weight_file(folder, stem)
    check_safetensors(path)
    try:
        return model_class.from_pretrained(
            folder,
            torch_dtype=dtype,
            variant=variant,
            use_safetensors=True,
            local_files_only=True,
        )
    except (OSError, ValueError, RuntimeError) as error:
        raise WeightsError(
            f"Could not load {folder} ({describe(error)}): fetch the weights again ({HOW_TO_GET_WEIGHTS})."
        ) from error


def read_json(path: Path) -> dict:
    """The JSON object in path; WeightsError naming the file when it is unreadable or not JSON."""
    require(path)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # ValueError covers bad UTF-8 and bad JSON
        raise WeightsError(
            f"Model file {path} is corrupt ({describe(error)}): "
            f"delete it and fetch the weights again ({HOW_TO_GET_WEIGHTS})."
        ) from error
    if not isinstance(content, dict):
        raise WeightsError(
            f"Model file {path} is corrupt (it holds no JSON object): "
            f"delete it and fetch the weights again ({HOW_TO_GET_WEIGHTS})."
        )
    return content


def checkpoint_kind(sd_dir: Path) -> tuple[str, dict]:
    """The kind ("sd" or "sdxl") of the checkpoint in sd_dir, and its model_index.json;
    WeightsError, naming the class found and those supported, for any other pipeline."""
    index_path = sd_dir / "model_index.json"
    index = read_json(index_path)
    class_name = index.get("_class_name")
    if not class_name:
        raise WeightsError(
            f"Model file {index_path} is corrupt (it names no pipeline class in _class_name): "
            f"delete it and fetch the weights again ({HOW_TO_GET_WEIGHTS})."
        )
    if class_name not in KINDS:
        raise WeightsError(
            f"{index_path} names the pipeline {class_name}, which this model cannot run: it runs "
            f"{' and '.join(KINDS)} checkpoints (SD 1.x, 2.x and SDXL base, in diffusers layout), "
            f"so {HOW_TO_GET_WEIGHTS}."
        )
    return KINDS[class_name], index


def load_scheduler(folder: Path) -> SchedulerMixin:
    """The scheduler class named in scheduler_config.json, with that configuration."""
    config_path = folder / "scheduler_config.json"
    class_name = read_json(config_path).get("_class_name", "")
    scheduler_class = getattr(diffusers, class_name, None)
    if not (isinstance(scheduler_class, type) and issubclass(scheduler_class, SchedulerMixin)):
        raise WeightsError(
            f"{config_path} names scheduler {class_name!r}, which diffusers does not have: "
            f"fetch the weights again ({HOW_TO_GET_WEIGHTS})."
        )
    return scheduler_class.from_pretrained(folder, local_files_only=True)


# The tokenizer's JSON files; tokenizer.json (when present) is what the tokenizer reads,
# otherwise vocab.json with merges.txt (the layout of the hub's SD 1.5).
# Fewer tokens than the 256 bytes means no real vocabulary (SD 1.5 has 49408, tiny 514).
MIN_VOCABULARY = 256
TOKENIZER_JSON_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json")


def load_tokenizer(folder: Path) -> CLIPTokenizer:
    """The CLIP tokenizer of folder; WeightsError naming the file when one is corrupt.

    The tokenizer libraries report a corrupt file as a bare decoding error without its
    name, so each JSON file is read once here first.
    """
    require(folder)
    require(folder / "vocab.json")
    require(folder / "merges.txt")
    for name in TOKENIZER_JSON_FILES:
        if (folder / name).exists():
            read_json(folder / name)
    try:
        tokenizer = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
        tokenizer("a")  # a broken vocabulary or merges file fails here, not in the first prediction
    except Exception as error:  # tokenizers raise many types (Exception, ValueError, KeyError...)
        raise WeightsError(
            f"Could not load the tokenizer in {folder} ({describe(error)}): "
            f"fetch the weights again ({HOW_TO_GET_WEIGHTS})."
        ) from error
    # transformers builds a tokenizer of a few special tokens, without a word, when it
    # finds no vocabulary it can read; every prompt would then encode the same.
    if len(tokenizer) < MIN_VOCABULARY:
        raise WeightsError(
            f"The tokenizer in {folder} has only {len(tokenizer)} tokens, so its vocabulary "
            f"files are broken: fetch the weights again ({HOW_TO_GET_WEIGHTS})."
        )
    return tokenizer


def load_safety_checker(
    sd_dir: Path, device: torch.device, dtype: torch.dtype
) -> tuple[StableDiffusionSafetyChecker | None, CLIPImageProcessorPil | None]:
    """The safety checker and its image processor, or (None, None) when not shipped."""
    folder = sd_dir / "safety_checker"
    if not folder.exists():
        return None, None
    checker = load_model(StableDiffusionSafetyChecker, folder, "model", dtype).to(device).eval()
    processor_folder = sd_dir / "feature_extractor"
    require(processor_folder / "preprocessor_config.json")
    # The PIL processor: the default CLIPImageProcessor would need torchvision.
    processor = CLIPImageProcessorPil.from_pretrained(processor_folder, local_files_only=True)
    return checker, processor


def vae_dtype(kind: str, vae_folder: Path, dtype: torch.dtype) -> torch.dtype:
    """float32 for an SDXL VAE that asks for it in fp16 (force_upcast, as diffusers' SDXL
    pipeline reads it: SDXL's own VAE overflows in fp16), else dtype.

    SD 1.x/2.x VAEs run in dtype whatever their config says: diffusers' SD pipeline ignores
    force_upcast (which defaults to true), and so does this.
    """
    if kind != "sdxl" or dtype != torch.float16:
        return dtype
    force_upcast = read_json(require(vae_folder) / "config.json").get("force_upcast", True)
    return torch.float32 if force_upcast else dtype


def check_sdxl_shapes(
    sd_dir: Path, unet: UNet2DConditionModel, text_encoder: CLIPTextModel, text_encoder_2: CLIPTextModelWithProjection
) -> None:
    """WeightsError when SDXL's UNet does not take what its encoders give: both encoders'
    per-token states side by side, and the pooled embedding with 6 size numbers (a refiner
    UNet, or pieces of two checkpoints, would fail only in the first prediction)."""
    given = (
        text_encoder.config.hidden_size + text_encoder_2.config.hidden_size,
        6 * (unet.config.addition_time_embed_dim or 0) + text_encoder_2.config.projection_dim,
    )
    # An SD 1.x/2.x UNet has no added embeddings: None in its config.
    expected = (unet.config.cross_attention_dim, unet.config.projection_class_embeddings_input_dim or 0)
    if expected != given:
        raise WeightsError(
            f"The SDXL UNet in {sd_dir / 'unet'} takes text embeddings {expected[0]} wide and added "
            f"embeddings {expected[1]} wide, but its text encoders give {given[0]} and {given[1]}, so its "
            f"pieces come from different checkpoints: fetch the weights again ({HOW_TO_GET_WEIGHTS})."
        )


def load_film(weights_dir: Path, device: torch.device, dtype: torch.dtype) -> film_net.FilmNet:
    path = require(weights_dir / FILM_FILE)
    check_safetensors(path)
    try:
        return film_net.load(path, device, dtype)
    except (OSError, ValueError, RuntimeError) as error:
        raise WeightsError(
            f"Could not load FILM weights {path} ({describe(error)}): fetch them again ({HOW_TO_GET_WEIGHTS})."
        ) from error


def load_upscaler(weights_dir: Path, device: torch.device, dtype: torch.dtype) -> spandrel.ImageModelDescriptor | None:
    """The upscaler in weights_dir/UPSCALER_FILE, loaded by spandrel (which tells the
    architecture from the weights' names and shapes) onto device in dtype, or in float32
    when its architecture cannot run in dtype; None when the file is not there.

    Raises WeightsError, in one sentence naming the file, when it cannot be read, or holds
    no model spandrel knows, or one that is not a 4x RGB upscaler.
    """
    path = weights_dir / UPSCALER_FILE
    if not path.exists():
        return None
    try:
        upscaler = spandrel.ModelLoader(device).load_from_file(path)
    except spandrel.UnsupportedModelError as error:
        raise WeightsError(
            f"Upscaler weights file {path} holds no upscaler that spandrel recognises ({describe(error)}): "
            f"put Real-ESRGAN's realesr-general-x4v3.pth there ({HOW_TO_GET_WEIGHTS}), or remove it to run "
            "without upscaling."
        ) from error
    except Exception as error:  # torch.load raises many types for a file that is no checkpoint
        raise WeightsError(
            f"Upscaler weights file {path} is corrupt, truncated or no PyTorch checkpoint ({describe(error)}): "
            f"delete it and fetch it again ({HOW_TO_GET_WEIGHTS})."
        ) from error
    if not (
        isinstance(upscaler, spandrel.ImageModelDescriptor)
        and upscaler.scale == UPSCALER_SCALE
        and upscaler.input_channels == upscaler.output_channels == UPSCALER_CHANNELS
    ):
        raise WeightsError(
            f"Upscaler weights file {path} holds a {upscaler.architecture.name} model that makes "
            f"{upscaler.output_channels}-channel images at {upscaler.scale}x, but `upscale` needs a {UPSCALER_SCALE}x "
            f"model of RGB pictures: put Real-ESRGAN's realesr-general-x4v3.pth there ({HOW_TO_GET_WEIGHTS}), "
            "or remove it to run without upscaling."
        )
    supported = {torch.float32: True, torch.float16: upscaler.supports_half, torch.bfloat16: upscaler.supports_bfloat16}
    return upscaler.to(dtype if supported.get(dtype, False) else torch.float32).eval()


def upscaler_summary(upscaler: spandrel.ImageModelDescriptor | None, weights_dir: Path) -> str:
    """What setup loaded for the `upscale` input, for its log: e.g. "RealESRGAN Compact, 4x,
    1,213,296 parameters, torch.float16", or why upscaling is unavailable."""
    if upscaler is None:
        return (
            f"none, so upscale=2x and 4x fail: {weights_dir / UPSCALER_FILE} is not there "
            "(script/download-weights fetches it)"
        )
    parameters = sum(parameter.numel() for parameter in upscaler.model.parameters())
    return f"{upscaler.architecture.name}, {upscaler.scale}x, {parameters:,} parameters, {upscaler.dtype}"


def require_upscaler(components: Components, upscale: str) -> None:
    """WeightsError, in one sentence, when the request upscales and setup found no upscaler:
    raised before any model runs."""
    if upscale != "none" and components.upscaler is None:
        raise WeightsError(
            f"upscale={upscale} needs the upscaler weights ({UPSCALER_FILE} in the weights directory), "
            "which this server did not find at setup: leave upscale at none, or fetch them with "
            "script/download-weights and restart the server."
        )


def place_convolutional(model: torch.nn.Module, device: torch.device, channels_last: bool) -> torch.nn.Module:
    """Move a convolutional model (UNet, VAE) to device in eval mode, in the channels-last
    memory format when asked. Values are the same; only the layout of activations changes."""
    model = model.to(device).eval()
    return model.to(memory_format=torch.channels_last) if channels_last else model


# Channels-last lets cuDNN run fp16 convolutions on tensor cores without transposing
# activations. On CPU (oneDNN) it made the SD 1.5 VAE decode about 9% faster and the UNet
# about 4% slower (256x256), so there only the VAE uses it.
def place_unet(unet: UNet2DConditionModel, device: torch.device) -> UNet2DConditionModel:
    return place_convolutional(unet, device, channels_last=device.type == "cuda")


def place_vae(vae: AutoencoderKL, device: torch.device) -> AutoencoderKL:
    return place_convolutional(vae, device, channels_last=True)


def load_components(weights_dir: str | Path, device: str | torch.device, dtype: torch.dtype) -> Components:
    """Load every model of the walk from weights_dir onto device in dtype (fp16 on CUDA):
    an SD 1.x/2.x or an SDXL checkpoint, as its model_index.json says.

    Raises WeightsError, in one sentence naming the path and the fix, when something is
    missing or unreadable, or the checkpoint is of another kind. The upscaler alone may be
    missing (Components.upscaler is then None).
    """
    weights_dir = require(Path(weights_dir))
    device = torch.device(device)
    sd_dir = require(weights_dir / STABLE_DIFFUSION_DIR)
    kind, index = checkpoint_kind(sd_dir)

    tokenizer = load_tokenizer(sd_dir / "tokenizer")
    scheduler = load_scheduler(sd_dir / "scheduler")
    text_encoder = load_model(CLIPTextModel, sd_dir / "text_encoder", "model", dtype)
    tokenizer_2 = text_encoder_2 = None
    if kind == "sdxl":
        tokenizer_2 = load_tokenizer(sd_dir / "tokenizer_2")
        text_encoder_2 = load_model(CLIPTextModelWithProjection, sd_dir / "text_encoder_2", "model", dtype)
        text_encoder_2 = text_encoder_2.to(device).eval()
    unet = load_model(UNet2DConditionModel, sd_dir / "unet", "diffusion_pytorch_model", dtype)
    if kind == "sdxl":
        check_sdxl_shapes(sd_dir, unet, text_encoder, text_encoder_2)
    vae = load_model(AutoencoderKL, sd_dir / "vae", "diffusion_pytorch_model", vae_dtype(kind, sd_dir / "vae", dtype))
    safety_checker, feature_extractor = load_safety_checker(sd_dir, device, dtype)
    film = load_film(weights_dir, device, dtype)
    upscaler = load_upscaler(weights_dir, device, dtype)
    return Components(
        tokenizer=tokenizer,
        text_encoder=text_encoder.to(device).eval(),
        unet=place_unet(unet, device),
        vae=place_vae(vae, device),
        scheduler=scheduler,
        safety_checker=safety_checker,
        feature_extractor=feature_extractor,
        film=film,
        device=device,
        dtype=dtype,
        kind=kind,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        # diffusers' default for SDXL when model_index.json does not say.
        force_zeros_for_empty_prompt=kind == "sdxl" and bool(index.get("force_zeros_for_empty_prompt", True)),
        upscaler=upscaler,
    )
