import hashlib
import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from animate.tiny import (
    SD21_SCHEDULER,
    SDXL_SCHEDULER,
    tiny_tokenizer_vocab,
    write_tiny_sd2_weights,
    write_tiny_sdxl_weights,
    write_tiny_weights,
)
from animate.weights import (
    HOW_TO_GET_WEIGHTS,
    UPSCALER_FILE,
    Components,
    WeightsError,
    load_components,
    load_upscaler,
    require_upscaler,
    spandrel,
    upscaler_summary,
)
from tests.conftest import REPO_ROOT


def digests(directory):
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def test_tiny_weights_are_deterministic_safetensors_in_the_real_layout(tiny_weights, tmp_path):
    again = write_tiny_weights(tmp_path / "again")
    assert digests(again) == digests(tiny_weights)
    files = set(digests(tiny_weights))
    for required in [
        "stable-diffusion/model_index.json",
        "stable-diffusion/unet/diffusion_pytorch_model.safetensors",
        "stable-diffusion/vae/diffusion_pytorch_model.safetensors",
        "stable-diffusion/text_encoder/model.safetensors",
        "stable-diffusion/tokenizer/vocab.json",
        "stable-diffusion/tokenizer/merges.txt",
        "stable-diffusion/scheduler/scheduler_config.json",
        "film_net/film_net_style.safetensors",
        "upscaler/realesr-general-x4v3.pth",
    ]:
        assert required in files
    # Only the upscaler is a PyTorch checkpoint, as Real-ESRGAN's release file is.
    assert [name for name in files if name.endswith((".bin", ".pt", ".pth", ".ckpt"))] == [
        "upscaler/realesr-general-x4v3.pth"
    ]


def test_tiny_components_load_like_real_ones(components):
    assert isinstance(components, Components)
    assert components.safety_checker is None and components.feature_extractor is None
    assert components.film is not None
    assert components.device == torch.device("cpu") and components.dtype == torch.float32
    assert type(components.scheduler).__name__ == "PNDMScheduler"
    config = components.scheduler.config
    assert (config.beta_start, config.beta_end, config.beta_schedule) == (0.00085, 0.012, "scaled_linear")
    assert config.skip_prk_steps and config.steps_offset == 1 and not config.set_alpha_to_one
    assert components.tokenizer.model_max_length == 77
    assert components.unet.config.cross_attention_dim == components.text_encoder.config.hidden_size
    assert components.unet.config.in_channels == components.vae.config.latent_channels == 4
    with torch.inference_mode():
        image = components.vae.decode(torch.zeros(1, 4, 8, 8)).sample
    assert image.shape == (1, 3, 64, 64)  # a downsampling factor of 8, like SD's VAE


def test_byte_level_tokenizer_covers_any_text(components):
    vocab = tiny_tokenizer_vocab()
    assert len(vocab) == 514
    tokenizer = components.tokenizer
    ids = tokenizer("Café ☕ 42!").input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.unk_token_id not in ids[1:-1]
    assert len(ids) > 5


def test_missing_weights_directory_names_it_and_the_fix(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(WeightsError) as caught:
        load_components(missing, "cpu", torch.float32)
    message = str(caught.value)
    assert str(missing) in message
    assert "script/download-weights" in message and "python -m animate.tiny" in message


@pytest.mark.parametrize(
    "relative",
    [
        "stable-diffusion/unet/diffusion_pytorch_model.safetensors",
        "stable-diffusion/tokenizer/vocab.json",
        "stable-diffusion/scheduler/scheduler_config.json",
        "film_net/film_net_style.safetensors",
    ],
)
def test_missing_file_is_named(tiny_weights, tmp_path, relative):
    copy = shutil.copytree(tiny_weights, tmp_path / "weights")
    (copy / relative).unlink()
    with pytest.raises(WeightsError, match="script/download-weights") as caught:
        load_components(copy, "cpu", torch.float32)
    assert str(copy / relative) in str(caught.value)


@pytest.mark.parametrize(
    "relative",
    ["stable-diffusion/vae/diffusion_pytorch_model.safetensors", "film_net/film_net_style.safetensors"],
)
def test_truncated_file_is_named(tiny_weights, tmp_path, relative):
    copy = shutil.copytree(tiny_weights, tmp_path / "weights")
    path = copy / relative
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(WeightsError, match="corrupt or truncated") as caught:
        load_components(copy, "cpu", torch.float32)
    assert str(path) in str(caught.value)


def test_fp16_variant_files_are_preferred(tiny_weights, tmp_path):
    copy = shutil.copytree(tiny_weights, tmp_path / "weights")
    unet_dir = copy / "stable-diffusion" / "unet"
    # A variant file whose weights differ from the plain one shows which file was read.
    plain = load_components(copy, "cpu", torch.float32).unet
    from safetensors.torch import load_file, save_file

    state = load_file(unet_dir / "diffusion_pytorch_model.safetensors")
    save_file({k: (v * 0.5).half() for k, v in state.items()}, unet_dir / "diffusion_pytorch_model.fp16.safetensors")
    loaded = load_components(copy, "cpu", torch.float32).unet
    assert loaded.dtype == torch.float32
    name = "conv_in.weight"
    expected = (plain.state_dict()[name] * 0.5).half().float()
    torch.testing.assert_close(loaded.state_dict()[name], expected)


TOKENIZER = "stable-diffusion/tokenizer"


@pytest.mark.parametrize(
    "relative, content",
    [
        (f"{TOKENIZER}/tokenizer.json", b"\x00\xff not json"),
        (f"{TOKENIZER}/tokenizer.json", b'{"model": {"type": "BPE", "vo'),
        (f"{TOKENIZER}/tokenizer_config.json", b""),
        (f"{TOKENIZER}/vocab.json", b"[1, 2]"),
        ("stable-diffusion/scheduler/scheduler_config.json", b"\x00\xff"),
    ],
    ids=["tokenizer-binary", "tokenizer-truncated", "tokenizer-config-empty", "vocab-not-an-object", "scheduler-binary"],
)
def test_corrupt_json_file_is_named_with_the_fix(tiny_weights, tmp_path, relative, content):
    copy = shutil.copytree(tiny_weights, tmp_path / "weights")
    (copy / relative).write_bytes(content)
    with pytest.raises(WeightsError) as caught:
        load_components(copy, "cpu", torch.float32)
    message = str(caught.value)
    assert message.startswith(f"Model file {copy / relative} is corrupt (")
    assert "fetch the weights again" in message and "script/download-weights" in message
    assert "\n" not in message and message.endswith(".")


@pytest.mark.parametrize(
    "vocab, merges, detail",
    [
        (None, b"\x00\xff\xfe garbage", "BPE"),
        (b"{}", None, "not found in the vocabulary"),
    ],
    ids=["merges-binary", "vocab-empty"],
)
def test_corrupt_tokenizer_in_the_hub_layout_is_named(tiny_weights, tmp_path, vocab, merges, detail):
    """The hub's SD 1.5 tokenizer has no tokenizer.json: vocab.json and merges.txt are read."""
    copy = shutil.copytree(tiny_weights, tmp_path / "weights")
    folder = copy / TOKENIZER
    (folder / "tokenizer.json").unlink()
    assert load_components(copy, "cpu", torch.float32).tokenizer("a cat").input_ids  # intact: loads
    if vocab is not None:
        (folder / "vocab.json").write_bytes(vocab)
    if merges is not None:
        (folder / "merges.txt").write_bytes(merges)
    with pytest.raises(WeightsError) as caught:
        load_components(copy, "cpu", torch.float32)
    message = str(caught.value)
    assert message.startswith(f"Could not load the tokenizer in {folder} (") and detail in message
    assert "script/download-weights" in message and "\n" not in message


def test_library_error_details_are_one_short_line():
    from animate.weights import ERROR_DETAIL_CHARS, describe

    detail = describe(RuntimeError("Error(s) in loading state_dict:\n" + "\tMissing key: x\n" * 500))
    assert detail.startswith("RuntimeError: Error(s) in loading state_dict: Missing key: x")
    assert "\n" not in detail and len(detail) <= ERROR_DETAIL_CHARS + 20


def test_tokenizer_without_a_vocabulary_is_refused(tiny_weights, tmp_path):
    """transformers quietly builds a tokenizer of special tokens only from such files."""
    copy = shutil.copytree(tiny_weights, tmp_path / "weights")
    folder = copy / TOKENIZER
    (folder / "tokenizer.json").unlink()
    (folder / "vocab.json").write_text('{"<|startoftext|>": 0, "<|endoftext|>": 1}')
    (folder / "merges.txt").write_text("#version: 0.2\n")
    with pytest.raises(WeightsError, match=r"has only 2 tokens, so its vocabulary files are broken: fetch the weights again"):
        load_components(copy, "cpu", torch.float32)


def test_unet_and_vae_use_scaled_dot_product_attention_and_the_vae_channels_last(components):
    from diffusers.models.attention_processor import AttnProcessor2_0

    assert components.unet.attn_processors  # the tiny VAE has no attention
    for model in (components.unet, components.vae):
        assert all(isinstance(p, AttnProcessor2_0) for p in model.attn_processors.values())
    conv_weights = [m.weight for m in components.vae.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in conv_weights)


def test_loading_and_building_weights_print_no_torchvision_notice(tiny_weights, tmp_path, make_safety_checker):
    """In a fresh process, since transformers gives each notice once per process: import
    animate.tiny (which imports diffusers' pipelines) and load weights with a safety checker."""
    weights = shutil.copytree(tiny_weights, tmp_path / "weights")
    checker, processor = make_safety_checker(2.0)
    checker.save_pretrained(weights / "stable-diffusion" / "safety_checker")
    processor.save_pretrained(weights / "stable-diffusion" / "feature_extractor")
    script = (
        "import sys, torch; import animate.tiny; from animate.weights import load_components; "
        "components = load_components(sys.argv[1], 'cpu', torch.float32); "
        "print(type(components.feature_extractor).__name__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(weights)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "CLIPImageProcessorPil"
    assert "torchvision" not in result.stdout + result.stderr


# The other kinds: SD 2.x (v-prediction) and SDXL, and the checkpoints that are neither.


@pytest.fixture(scope="module")
def tiny_sdxl_weights(tmp_path_factory):
    return write_tiny_sdxl_weights(tmp_path_factory.mktemp("weights") / "tiny-sdxl")


@pytest.fixture(scope="module")
def tiny_sd2_weights(tmp_path_factory):
    return write_tiny_sd2_weights(tmp_path_factory.mktemp("weights") / "tiny-sd2")


def test_sdxl_loads_with_both_encoders(tiny_sdxl_weights):
    components = load_components(tiny_sdxl_weights, "cpu", torch.float32)
    assert components.kind == "sdxl"
    assert components.summary() == "SDXL (StableDiffusionXLPipeline), prediction type epsilon"
    assert components.text_models() == (
        "two CLIP text encoders (CLIPTextModel, CLIPTextModelWithProjection) and their two tokenizers"
    )
    assert type(components.text_encoder).__name__ == "CLIPTextModel"
    assert type(components.text_encoder_2).__name__ == "CLIPTextModelWithProjection"
    assert components.text_encoder_2.device == torch.device("cpu") and not components.text_encoder_2.training
    assert components.tokenizer.pad_token == "<|endoftext|>" and components.tokenizer_2.pad_token == "!"
    assert components.force_zeros_for_empty_prompt
    assert components.safety_checker is None and components.film is not None  # SDXL base ships no checker
    assert type(components.scheduler).__name__ == "EulerDiscreteScheduler"
    # SDXL's scheduler_config.json, with the keys Euler does not take (other schedulers do).
    assert {key: components.scheduler.config[key] for key in SDXL_SCHEDULER} == SDXL_SCHEDULER
    unet = components.unet.config
    assert unet.addition_embed_type == "text_time"
    widths = components.text_encoder.config.hidden_size, components.text_encoder_2.config.hidden_size
    assert unet.cross_attention_dim == sum(widths) and widths[0] != widths[1]
    assert unet.projection_class_embeddings_input_dim == (
        6 * unet.addition_time_embed_dim + components.text_encoder_2.config.projection_dim
    )
    assert components.vae.config.scaling_factor == 0.13025


def test_sd2_loads_with_v_prediction(tiny_sd2_weights):
    components = load_components(tiny_sd2_weights, "cpu", torch.float32)
    assert components.kind == "sd" and components.text_encoder_2 is None and components.tokenizer_2 is None
    assert components.summary() == "Stable Diffusion 1.x/2.x (StableDiffusionPipeline), prediction type v_prediction"
    assert type(components.scheduler).__name__ == "DDIMScheduler"
    assert components.scheduler.config.prediction_type == "v_prediction"
    assert {key: components.scheduler.config[key] for key in SD21_SCHEDULER} == SD21_SCHEDULER
    # OpenCLIP's tokenizer pads with "!", and its text encoder uses GELU.
    tokenizer = components.tokenizer
    assert tokenizer.pad_token == "!" and tokenizer.pad_token_id != tokenizer.eos_token_id
    ids = tokenizer("a cat", padding="max_length", max_length=tokenizer.model_max_length).input_ids
    assert ids[-1] == tokenizer.pad_token_id and tokenizer.eos_token_id in ids
    assert components.text_encoder.config.hidden_act == "gelu"
    assert not components.force_zeros_for_empty_prompt


def test_sd15_tiny_weights_are_of_the_sd_kind(components):
    assert components.kind == "sd" and components.text_encoder_2 is None
    assert components.summary() == "Stable Diffusion 1.x/2.x (StableDiffusionPipeline), prediction type epsilon"
    assert components.text_models() == "CLIP text encoder, tokenizer"


def set_json(path, **changes):
    content = json.loads(path.read_text())
    content.update(changes)
    path.write_text(json.dumps(content))


@pytest.mark.parametrize("class_name", ["StableDiffusion3Pipeline", "FluxPipeline", "StableDiffusionXLImg2ImgPipeline"])
def test_another_pipeline_fails_in_one_sentence_naming_it(tiny_weights, tmp_path, class_name):
    copy = shutil.copytree(tiny_weights, tmp_path / "weights")
    index = copy / "stable-diffusion" / "model_index.json"
    set_json(index, _class_name=class_name)
    with pytest.raises(WeightsError) as caught:
        load_components(copy, "cpu", torch.float32)
    message = str(caught.value)
    assert message.startswith(f"{index} names the pipeline {class_name}, which this model cannot run: ")
    assert "StableDiffusionPipeline and StableDiffusionXLPipeline" in message
    assert "script/download-weights" in message
    assert "\n" not in message and message.endswith(".") and ". " not in message


def test_a_model_index_without_a_class_is_corrupt(tiny_weights, tmp_path):
    copy = shutil.copytree(tiny_weights, tmp_path / "weights")
    index = copy / "stable-diffusion" / "model_index.json"
    content = json.loads(index.read_text())
    del content["_class_name"]
    index.write_text(json.dumps(content))
    with pytest.raises(WeightsError, match="fetch the weights again") as caught:
        load_components(copy, "cpu", torch.float32)
    assert str(caught.value).startswith(f"Model file {index} is corrupt (it names no pipeline class")


@pytest.mark.parametrize("folder", ["text_encoder_2", "tokenizer_2"])
def test_sdxl_without_its_second_encoder_fails_in_one_sentence_naming_the_folder(tiny_sdxl_weights, tmp_path, folder):
    copy = shutil.copytree(tiny_sdxl_weights, tmp_path / "weights")
    missing = copy / "stable-diffusion" / folder
    shutil.rmtree(missing)
    with pytest.raises(WeightsError) as caught:
        load_components(copy, "cpu", torch.float32)
    assert str(caught.value) == f"Model weights not found at {missing}: {HOW_TO_GET_WEIGHTS}."


def test_sdxl_with_a_unet_of_another_checkpoint_fails_at_setup(tiny_sdxl_weights, tiny_weights, tmp_path):
    copy = shutil.copytree(tiny_sdxl_weights, tmp_path / "weights")
    unet = copy / "stable-diffusion" / "unet"
    shutil.rmtree(unet)
    shutil.copytree(tiny_weights / "stable-diffusion" / "unet", unet)  # SD 1.x's: no added conditioning
    with pytest.raises(WeightsError) as caught:
        load_components(copy, "cpu", torch.float32)
    message = str(caught.value)
    assert message.startswith(
        f"The SDXL UNet in {unet} takes text embeddings 32 wide and added embeddings 0 wide, "
        "but its text encoders give 80 and 40, so its pieces come from different checkpoints: "
    )
    assert "from different checkpoints" in message and "\n" not in message


def test_an_sdxl_vae_that_asks_for_float32_gets_it_in_half_precision(tiny_sdxl_weights, tiny_weights, tmp_path):
    """diffusers' SDXL pipeline decodes in float32 when the VAE config says force_upcast
    (SDXL's own VAE overflows in fp16); the fp16-safe VAE that script/download-weights
    fetches (and the tiny one) says false. SD 1.x/2.x VAEs stay in the model dtype."""
    sdxl = shutil.copytree(tiny_sdxl_weights, tmp_path / "sdxl")
    half = load_components(sdxl, "cpu", torch.float16)
    assert half.vae.dtype == torch.float16 and half.unet.dtype == torch.float16
    set_json(sdxl / "stable-diffusion" / "vae" / "config.json", force_upcast=True)
    upcast = load_components(sdxl, "cpu", torch.float16)
    assert upcast.vae.dtype == torch.float32 and upcast.unet.dtype == torch.float16
    assert load_components(sdxl, "cpu", torch.float32).vae.dtype == torch.float32
    sd = shutil.copytree(tiny_weights, tmp_path / "sd")
    set_json(sd / "stable-diffusion" / "vae" / "config.json", force_upcast=True)
    assert load_components(sd, "cpu", torch.float16).vae.dtype == torch.float16


def test_components_built_without_the_new_fields_are_sd(components):
    """bench and tests build Components by hand with the original fields only."""
    fields = {name: getattr(components, name) for name in (
        "tokenizer", "text_encoder", "unet", "vae", "scheduler", "safety_checker", "feature_extractor",
        "film", "device", "dtype",
    )}
    built = Components(**fields)
    assert built.kind == "sd" and built.text_encoder_2 is None and built.tokenizer_2 is None
    assert not built.force_zeros_for_empty_prompt


# The upscaler (weights/upscaler/realesr-general-x4v3.pth), loaded through spandrel.


def upscaler_file(weights_dir):
    path = weights_dir / UPSCALER_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_the_upscaler_loads_through_spandrel_in_the_models_precision(components, tiny_weights):
    assert components.upscaler.architecture.name == "RealESRGAN Compact"
    assert components.upscaler.scale == 4 and components.upscaler.dtype == torch.float32
    half = load_upscaler(tiny_weights, torch.device("cpu"), torch.float16)
    assert half.dtype == torch.float16  # as on CUDA: the compact architecture runs in half precision
    assert upscaler_summary(components.upscaler, tiny_weights) == (
        "RealESRGAN Compact, 4x, 4,920 parameters, torch.float32"
    )


def test_without_the_upscaler_setup_goes_on_and_only_upscaling_fails(tiny_weights, tmp_path):
    weights = shutil.copytree(tiny_weights, tmp_path / "weights")
    (weights / UPSCALER_FILE).unlink()
    components = load_components(weights, "cpu", torch.float32)
    assert components.upscaler is None and components.film is not None
    assert upscaler_summary(None, weights) == (
        f"none, so upscale=2x and 4x fail: {weights / UPSCALER_FILE} is not there (script/download-weights fetches it)"
    )
    require_upscaler(components, "none")
    with pytest.raises(WeightsError) as caught:
        require_upscaler(components, "2x")
    assert str(caught.value) == (
        "upscale=2x needs the upscaler weights (upscaler/realesr-general-x4v3.pth in the weights directory), which "
        "this server did not find at setup: leave upscale at none, or fetch them with script/download-weights "
        "and restart the server."
    )


def test_a_unet_in_the_upscalers_place_fails_in_one_sentence(tiny_weights, tmp_path):
    path = upscaler_file(tmp_path)
    unet = tiny_weights / "stable-diffusion" / "unet" / "diffusion_pytorch_model.safetensors"
    torch.save(load_file(unet), path)  # a PyTorch checkpoint, of a UNet
    with pytest.raises(WeightsError) as caught:
        load_upscaler(tmp_path, torch.device("cpu"), torch.float32)
    assert str(caught.value) == (
        f"Upscaler weights file {path} holds no upscaler that spandrel recognises (UnsupportedModelError): put "
        f"Real-ESRGAN's realesr-general-x4v3.pth there ({HOW_TO_GET_WEIGHTS}), or remove it to run without upscaling."
    )
    shutil.copy(unet, path)  # the safetensors file itself, under the checkpoint's name
    with pytest.raises(WeightsError, match=r"is corrupt, truncated or no PyTorch checkpoint \(UnpicklingError"):
        load_upscaler(tmp_path, torch.device("cpu"), torch.float32)


def test_a_truncated_upscaler_file_is_named(tiny_weights, tmp_path):
    path = upscaler_file(tmp_path)
    path.write_bytes((tiny_weights / UPSCALER_FILE).read_bytes()[:5000])
    with pytest.raises(WeightsError) as caught:
        load_upscaler(tmp_path, torch.device("cpu"), torch.float32)
    sentence = str(caught.value)
    assert sentence.startswith(f"Upscaler weights file {path} is corrupt, truncated or no PyTorch checkpoint (")
    assert sentence.endswith(f"delete it and fetch it again ({HOW_TO_GET_WEIGHTS}).") and "\n" not in sentence


def test_an_upscaler_of_another_scale_is_refused_in_one_sentence(tmp_path):
    path = upscaler_file(tmp_path)
    model = spandrel.architectures.Compact.Compact(num_feat=8, num_conv=2, upscale=2)
    torch.save({"params": model.state_dict()}, path)
    with pytest.raises(WeightsError) as caught:
        load_upscaler(tmp_path, torch.device("cpu"), torch.float32)
    assert str(caught.value) == (
        f"Upscaler weights file {path} holds a RealESRGAN Compact model that makes 3-channel images at 2x, but "
        f"`upscale` needs a 4x model of RGB pictures: put Real-ESRGAN's realesr-general-x4v3.pth there "
        f"({HOW_TO_GET_WEIGHTS}), or remove it to run without upscaling."
    )


def test_spandrel_imports_without_torchvision_and_leaves_none_behind():
    """In a fresh process: spandrel is imported (through animate.weights) with the stand-ins,
    which are gone afterwards, so transformers still finds no torchvision; the stand-ins
    refuse to run in one sentence."""
    script = (
        "import sys, importlib.util; import animate.weights; import transformers.utils as t; "
        "assert 'spandrel' in sys.modules; "
        "print([name for name in sys.modules if name.startswith('torchvision')], "
        "importlib.util.find_spec('torchvision'), t.is_torchvision_available()); "
        "from spandrel.architectures.RestoreFormer import tv_normalize\n"
        "try: tv_normalize(None, [0.5], [0.5])\n"
        "except RuntimeError as error: print(error)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == [
        "[] None False",
        "torchvision.transforms.functional.normalize is not available: torchvision is not installed, and this "
        "package runs only upscalers that do not need it (such as Real-ESRGAN's)",
    ]
