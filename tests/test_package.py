"""The package shell: cog.yaml, requirement pins, ignore rules, the scripts and the Makefile.

The `cog` command-line tool needs Docker and cannot run here, so these check what `cog build`
and `cog push` read, and the scripts that stand in for it.
"""

import importlib.machinery
import importlib.metadata
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml
from cog import BasePredictor
from cog import _inspector

from tests.conftest import REPO_ROOT

SEEDS = Path(__file__).parent / "server" / "seeds"


def load_script(name: str):
    """Import an extension-less script under script/ as a module."""
    path = REPO_ROOT / "script" / name
    loader = importlib.machinery.SourceFileLoader(name.replace("-", "_"), str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def cog_config() -> dict:
    return yaml.safe_load((REPO_ROOT / "cog.yaml").read_text())


def pins(requirements_file: Path) -> dict[str, str]:
    """{name: version} of the `name==version` lines; asserts every requirement is pinned."""
    result = {}
    for line in requirements_file.read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line or line.startswith("-r "):
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([A-Za-z0-9_.+\-]+)", line)
        assert match, f"{requirements_file.name}: not an exact pin: {line!r}"
        result[match.group(1).lower()] = match.group(2)
    return result


def test_cog_yaml_has_the_build_and_predictor():
    config = cog_config()
    assert config["build"]["gpu"] is True
    assert config["build"]["python_version"] == "3.11"
    assert config["build"]["python_requirements"] == "requirements.txt"
    assert config["predict"] == "predict.py:Predictor"
    assert set(config) == {"build", "predict"}
    assert set(config["build"]) == {"gpu", "cuda", "python_version", "python_requirements", "sdk_version", "run"}


def test_the_image_and_the_venv_install_spandrel_without_its_dependencies():
    """spandrel declares torchvision, which must never be installed (requirements-nodeps.txt
    says why): cog.yaml's run commands (which come after python_requirements and cannot read
    the code) and the Makefile install requirements-nodeps.txt's pins with --no-deps."""
    nodeps = pins(REPO_ROOT / "requirements-nodeps.txt")
    assert set(nodeps) == {"spandrel"}
    assert cog_config()["build"]["run"] == [f"pip install --no-deps {name}=={version}" for name, version in nodeps.items()]
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "$(PY) -m pip install --no-deps -r requirements-nodeps.txt" in makefile
    runtime = pins(REPO_ROOT / "requirements.txt")
    for needed in ("einops", "safetensors", "numpy", "typing_extensions"):  # spandrel's others, but torch
        assert needed in runtime, needed
    assert not set(nodeps) & set(runtime)
    assert importlib.util.find_spec("torchvision") is None


def test_cog_yaml_names_the_cuda_of_the_pinned_torch():
    """cog's torch/CUDA table has no torch 2.13: without build.cuda, `cog build` stops. torch
    2.13.0's Linux wheels depend on CUDA 13.0 (cuda-toolkit 13.0.3, cuDNN for CUDA 13)."""
    assert pins(REPO_ROOT / "requirements.txt")["torch"] == "2.13.0"
    assert cog_config()["build"]["cuda"] == "13.0"  # quoted in cog.yaml, or YAML reads a float


def test_the_image_gets_the_cog_sdk_the_tests_run():
    """build.sdk_version is the image's cog; requirements-cog.txt the local one; both are the
    installed version the server tests run. requirements.txt (what the image installs) has no
    cog line, which `cog build` would drop with a warning."""
    sdk_version = cog_config()["build"]["sdk_version"]
    assert "cog" not in pins(REPO_ROOT / "requirements.txt")
    assert pins(REPO_ROOT / "requirements-cog.txt")["cog"] == sdk_version
    assert importlib.metadata.version("cog") == sdk_version
    assert "-r requirements.txt" in (REPO_ROOT / "requirements-cog.txt").read_text().splitlines()


def test_predict_reference_resolves_to_a_predictor():
    file_name, class_name = cog_config()["predict"].split(":")
    assert (REPO_ROOT / file_name).is_file()
    info = _inspector.create_predictor(Path(file_name).stem, class_name)
    assert issubclass(getattr(sys.modules[Path(file_name).stem], class_name), BasePredictor)
    assert len(info.inputs) == 24  # the hosted model's 15, then this package's 9


def test_runtime_requirements_are_exact_pins_of_the_stack():
    runtime = pins(REPO_ROOT / "requirements.txt")
    assert runtime["torch"] == "2.13.0"  # the only torch with a CPU wheel here
    for name in ("diffusers", "transformers", "accelerate", "safetensors", "pillow", "imageio-ffmpeg", "numpy"):
        assert name in runtime, name
    assert "torchvision" not in runtime  # no CPU build of it here


def test_dev_requirements_add_to_the_local_ones():
    text = (REPO_ROOT / "requirements-dev.txt").read_text()
    assert "-r requirements-cog.txt" in text.splitlines()
    dev = pins(REPO_ROOT / "requirements-dev.txt")
    assert "pytest" in dev
    assert not set(dev) & set(pins(REPO_ROOT / "requirements-cog.txt"))
    assert not set(dev) & set(pins(REPO_ROOT / "requirements.txt"))


def test_installed_versions_are_the_pinned_ones():
    for requirements in ("requirements.txt", "requirements-nodeps.txt", "requirements-cog.txt", "requirements-dev.txt"):
        for name, version in pins(REPO_ROOT / requirements).items():
            # `==2.13.0` accepts a local build such as 2.13.0+cpu (PEP 440), so drop the label.
            installed = importlib.metadata.version(name).split("+")[0]
            assert installed == version, f"{name} (pinned in {requirements})"


def test_ignore_rules_keep_weights_in_the_image_but_out_of_git():
    gitignore = (REPO_ROOT / ".gitignore").read_text().splitlines()
    for ignored in (".venv/", "weights/*", ".cog/", "outputs/"):
        assert ignored in gitignore, ignored
    dockerignore = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    for excluded in (".venv", "outputs"):
        assert excluded in dockerignore, excluded
    assert not {"weights", "weights/", "weights/*"} & set(dockerignore)


def test_example_request_is_the_hosted_models_example():
    """script/example-request.json (what `make demo` sends) is the input of seed 002's example."""
    page = (SEEDS / "002_3e8fc667a814ad6b.txt").read_text()
    block = re.search(r"Request Example\s*json\s*(\{.*?\n  \})\n", page, re.S)
    assert block, "no request example on the page"
    example = json.loads(block.group(1))
    assert json.loads((REPO_ROOT / "script" / "example-request.json").read_text()) == {"input": example["input"]}


def test_download_weights_dry_run_prints_the_plan_and_touches_nothing(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "script" / "download-weights"), "--dry-run", "--weights", str(tmp_path / "w")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    out = result.stdout
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in out
    assert "akhaliq/frame-interpolation-film-style" in out
    assert str(tmp_path / "w" / "stable-diffusion") in out
    assert str(tmp_path / "w" / "film_net" / "film_net_style.safetensors") in out
    assert "python -m film_net.convert" in out
    for needed in ("unet/diffusion_pytorch_model.fp16.safetensors", "safety_checker/", "feature_extractor/", "saved_model.pb", "variables/"):
        assert needed in out, needed
    assert list(tmp_path.iterdir()) == []


def test_download_weights_fetches_into_the_layout_and_converts_film(tmp_path):
    """The real (non-dry) path with the hub and the converter replaced by recorders."""
    script = load_script("download-weights")
    fetched, commands = [], []

    def fake_snapshot_download(repo_id, allow_patterns, local_dir):
        fetched.append((repo_id, list(allow_patterns), Path(local_dir)))
        Path(local_dir).mkdir(parents=True, exist_ok=True)

    def fake_run(command, check, cwd):
        commands.append(command)
        assert Path(command[-2]).is_dir(), "the SavedModel directory must exist while converting"

    sd_dir, film_file = script.destinations(tmp_path)
    script.fetch_stable_diffusion(sd_dir, fake_snapshot_download)
    script.fetch_film(film_file, fake_snapshot_download, run=fake_run)

    (sd_repo, sd_patterns, sd_target), (film_repo, film_patterns, film_target) = fetched
    assert (sd_repo, sd_target) == ("stable-diffusion-v1-5/stable-diffusion-v1-5", tmp_path / "stable-diffusion")
    for component in ("unet", "vae", "text_encoder", "safety_checker"):
        assert f"{component}/config.json" in sd_patterns
        assert any(p.startswith(f"{component}/") and p.endswith(".fp16.safetensors") for p in sd_patterns)
    assert film_repo == "akhaliq/frame-interpolation-film-style"
    assert commands == [[sys.executable, "-m", "film_net.convert", str(film_target), str(tmp_path / "film_net" / "film_net_style.safetensors")]]
    assert not film_target.exists(), "the SavedModel download is temporary"


def test_makefile_has_the_documented_targets():
    for target in ("demo", "test", "weights", "schema", "bench", "clean"):
        result = subprocess.run(["make", "-n", target], cwd=REPO_ROOT, capture_output=True, text=True)
        assert result.returncode == 0, f"make -n {target}: {result.stderr}"
    assert "script/demo" in subprocess.run(["make", "-n", "demo"], cwd=REPO_ROOT, capture_output=True, text=True).stdout


def test_make_demo_checkpoint_runs_that_checkpoints_tiny_weights():
    """`make demo CHECKPOINT=sdxl`, as the README has it: the tiny SDXL is written (-B: as
    if nothing were there yet) and the demo is told the checkpoint; a wrong name is refused."""
    for checkpoint, kind, folder in (("sdxl", "sdxl", "weights/tiny-sdxl"), ("sd21", "sd2", "weights/tiny-sd2")):
        result = subprocess.run(
            ["make", "-n", "-B", "demo", f"CHECKPOINT={checkpoint}"], cwd=REPO_ROOT, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        assert f"-m animate.tiny --kind {kind} {folder}\n" in result.stdout
        assert f"script/demo --checkpoint {checkpoint}" in result.stdout
    wrong = subprocess.run(["make", "-n", "demo", "CHECKPOINT=sdx"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert wrong.returncode != 0
    assert "CHECKPOINT=sdx is not a checkpoint: use sd15, sd21 or sdxl." in wrong.stderr


def test_ci_runs_the_readme_test_command():
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert ci.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in ci
    assert ci.rstrip().endswith("make test")
    assert "make test" in (REPO_ROOT / "README.md").read_text()
