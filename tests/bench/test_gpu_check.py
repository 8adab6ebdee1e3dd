"""What of the GPU check (make gpu-check: bench.gpu_check, bench.gpu_run, bench.gpu_wheels)
can be checked without a GPU: its arguments, its one sentence on a machine without CUDA,
its table and JSON, its parts run on the CPU with tiny models, and that the wheels it
installs cover every package the code it runs imports."""

import ast
import dataclasses
import importlib.metadata
import json
import subprocess
import sys
import zipfile

import pytest
import torch

from bench import gpu_check, gpu_run, gpu_wheels
from bench.presets import PRESETS, tiny_components
from tests.conftest import REPO_ROOT
from tests.fake_memory import GIB, FakeMemory

torch.set_num_threads(1)


def test_arguments_and_their_defaults():
    arguments = gpu_check.parse_arguments([])
    assert arguments.parts == gpu_check.PARTS == ("half-precision", "sd15-default", "out-of-memory", "sdxl")
    assert arguments.budget == 480  # 8 minutes
    assert arguments.out == REPO_ROOT / "bench" / "results" / "gpu-check.json"
    chosen = gpu_check.parse_arguments(["--parts", "sdxl,out-of-memory", "--budget", "300", "--trial-free-gib", "2"])
    assert (chosen.parts, chosen.budget, chosen.trial_free_gib) == (("sdxl", "out-of-memory"), 300, 2)


def test_an_unknown_part_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        gpu_check.parse_arguments(["--parts", "sd15-default,warp-drive"])
    assert exit_.value.code == 2
    assert "parts are among half-precision, sd15-default, out-of-memory, sdxl, not warp-drive" in capsys.readouterr().err


@pytest.mark.parametrize("command", [[sys.executable, "script/gpu-check"], ["make", "--no-print-directory", "gpu-check"]],
                         ids=["script", "make"])
def test_without_cuda_it_says_so_in_one_sentence_and_exits_non_zero(tmp_path, command):
    out = tmp_path / "result.json"
    finished = subprocess.run(
        [*command, *(["GPU_CHECK_ARGS=--out " + str(out)] if command[0] == "make" else ["--out", str(out)])],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert finished.returncode != 0
    sentence = [line for line in finished.stderr.splitlines() if not line.startswith("make")]
    assert sentence == [gpu_check.NO_CUDA]
    assert gpu_check.NO_CUDA.count(".") == 1 and gpu_check.NO_CUDA.endswith(".")
    assert not out.exists()


def write_wheel(folder, name, version):
    """A minimal pure-Python wheel of one module, `name`, that says its version."""
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": f"VERSION = {version!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    with zipfile.ZipFile(path, "w") as wheel:
        for file, text in files.items():
            wheel.writestr(file, text)
        wheel.writestr(f"{info}/RECORD", "".join(f"{file},,\n" for file in [*files, f"{info}/RECORD"]))
    return path


def test_the_wheels_are_installed_without_network_once(tmp_path):
    wheels, site = tmp_path / "gpu-wheels", tmp_path / "site"
    wheels.mkdir()
    with pytest.raises(SystemExit, match=r"^No wheels in .*: run `make gpu-wheels` where the package registry"):
        gpu_check.install_wheels(wheels, site)
    write_wheel(wheels, "gpu_check_probe", "1.0")
    gpu_check.install_wheels(wheels, site)
    assert (site / "gpu_check_probe.py").read_text() == "VERSION = '1.0'\n"
    (site / "gpu_check_probe.py").write_text("touched")
    gpu_check.install_wheels(wheels, site)  # the same wheels: nothing to do
    assert (site / "gpu_check_probe.py").read_text() == "touched"
    (wheels / "gpu_check_probe-1.0-py3-none-any.whl").unlink()
    write_wheel(wheels, "gpu_check_probe", "2.0")
    gpu_check.install_wheels(wheels, site)  # other wheels: installed afresh
    assert (site / "gpu_check_probe.py").read_text() == "VERSION = '2.0'\n"


def fake_side(total, stages):
    return {"total_s": total, "stages_s": stages, "gpu_peak_mib": 9876.0}


FAKE_RESULT = {
    "started_at": "2026-12-05T10:00:00+0000",
    "budget_s": 480,
    "seconds": 301.5,
    "machine": {"card": "NVIDIA H200", "memory_gib": 139.8, "driver": "580.1", "cuda": "13.0", "torch": "2.11.0",
                "python": "3.12.3", "ffmpeg": False},
    "parts": {
        "half-precision": {"status": "passed", "seconds": 40.2, "summary": "17 passed in 35.0s"},
        "sd15-default": {
            "status": "passed", "seconds": 95.0, "summary": "8.00x the reference",
            "comparison": {
                "reference": fake_side(24.0, {"text": 0.1, "keyframe_denoise": 20.0, "inbetweens": 2.0}),
                "pipeline": fake_side(3.0, {"text": 0.05, "keyframe_denoise": 2.0, "inbetweens": 0.5}),
                "speedup": 8.0,
            },
        },
        "out-of-memory": {"status": "failed", "seconds": 20.0, "summary": "no batch split"},
        "sdxl": {"status": "skipped", "summary": "100 s of the budget left, 240 s needed"},
    },
}


def test_the_table_of_a_check():
    text = gpu_check.table(FAKE_RESULT)
    lines = text.splitlines()
    assert lines[0] == (
        "GPU check: NVIDIA H200, 139.8 GiB, driver 580.1, CUDA 13.0, torch 2.11.0, Python 3.12.3; "
        "ffmpeg: no (frames made, not encoded)"
    )
    header = next(line for line in lines if "sd15-default reference" in line)
    assert header.split() == ["sd15-default", "reference", "sd15-default", "pipeline"]
    assert "keyframe denoise (s)" in text and any(line.split()[-2:] == ["20.00", "2.00"] for line in lines)
    assert any(line.startswith("encode (s)") and line.split()[-2:] == ["-", "-"] for line in lines)  # not encoded
    assert any(line.startswith("peak GPU memory (MiB)") and line.split()[-2:] == ["9876", "9876"] for line in lines)
    assert any(line.startswith("ratio to the reference") and line.endswith("8.00x") for line in lines)
    assert "out-of-memory: failed (20.0 s) no batch split" in lines
    assert "sdxl: skipped (- s) 100 s of the budget left, 240 s needed" in lines
    assert lines[-1] == "whole check: 301.5 s of a budget of 480 s"


def test_the_json_record_is_written_whole(tmp_path):
    path = tmp_path / "results" / "gpu-check.json"
    gpu_check.write_result(FAKE_RESULT, path)
    assert json.loads(path.read_text()) == FAKE_RESULT
    assert [file.name for file in path.parent.iterdir()] == ["gpu-check.json"]


@pytest.fixture(scope="module")
def tiny():
    return tiny_components("cpu", torch.float32)


# The tiny preset's request, smaller: 3 prompts, 3 keyframes per segment (K = 5), S = 3.
SMALL = dataclasses.replace(
    PRESETS["tiny"].settings, width=64, height=64, num_inference_steps=6, num_animation_frames=3, num_interpolation_steps=3
)


def test_the_parts_run_on_the_cpu_with_tiny_models(tiny, tmp_path, monkeypatch):
    """The same code as on the GPU, but for the preset (tiny), the request (small), the
    memory (a fake, where the GPU's trial fills the card) and the suite (one test of it)."""
    tiny_preset = dataclasses.replace(PRESETS["tiny"], settings=SMALL)
    record, components, pipeline = gpu_run.preset_part(tiny_preset, encode=True, components=tiny)
    assert record["status"] == "passed", record["summary"]
    assert record["batches_after_setup"] == {"usable_bytes": None, "keyframes": 4, "decode": 2, "FILM": 1}
    assert record["comparison"]["keyframes"]["agree"] and pipeline.keyframes.shape == (5, 3, 64, 64)

    trial = gpu_run.trial_walk(
        components, FakeMemory(64 * GIB, limits={"keyframes": 2, "FILM": 1}), SMALL, True, pipeline.keyframes
    )
    assert trial["status"] == "passed", trial["summary"]
    assert trial["splits"] == [
        "keyframes: out of GPU memory at 5 keyframes per batch; trying again at 2",
        "FILM: out of GPU memory at 4 pairs of frames per batch; trying again at 2",
        "FILM: out of GPU memory at 2 pairs of frames per batch; trying again at 1",
    ]
    assert trial["max_keyframe_difference"] < 1e-4  # float32: rounding only
    unsplit = gpu_run.trial_walk(components, FakeMemory(64 * GIB), SMALL, True, pipeline.keyframes)
    assert unsplit["status"] == "failed" and unsplit["summary"].startswith("no batch split")

    suite = gpu_run.half_precision_part("cpu", 300, ("-k", "cover_every_pair"))
    assert suite["status"] == "passed" and suite["summary"].startswith("1 passed"), suite

    result = {"budget_s": 480, "seconds": 1.0, "machine": {}, "parts": {"sd15-default": record, "out-of-memory": trial}}
    gpu_check.write_result(result, tmp_path / "gpu-check.json")
    assert "ratio to the reference" in gpu_check.table(json.loads((tmp_path / "gpu-check.json").read_text()))


def module_imports(path):
    """The names `path` imports at module level: not those imported inside a function, which
    run only when called (TensorFlow in film_net.convert, say)."""
    names = set()

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(child, ast.Import):
                names.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0:
                names.update({child.module, *(f"{child.module}.{alias.name}" for alias in child.names)})
            visit(child)

    visit(ast.parse(path.read_text()))
    return names


LOCAL = ("animate", "film_net", "bench", "tests", "predict")


def local_file(name):
    """The repository file of a local module name, or None (a name imported from a module)."""
    parts = name.split(".")
    for candidate in (REPO_ROOT.joinpath(*parts).with_suffix(".py"), REPO_ROOT.joinpath(*parts, "__init__.py")):
        if candidate.exists():
            return candidate
    return None


def third_party_imports(entry_files):
    """Top-level names of the third-party modules imported at module level by entry_files and,
    recursively, by the repository's modules they import."""
    pending, seen, found = list(entry_files), set(), set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in module_imports(path):
            top = name.split(".")[0]
            if top in LOCAL:
                local = local_file(name)
                if local is not None:
                    pending.append(local)
            elif top not in sys.stdlib_module_names:
                found.add(top)
    return found


def test_the_wheels_cover_every_package_the_gpu_check_imports():
    entry_files = [
        REPO_ROOT / "script" / "gpu-check", REPO_ROOT / "bench" / "gpu_run.py", REPO_ROOT / "bench" / "__main__.py",
        REPO_ROOT / "tests" / "conftest.py", REPO_ROOT / "tests" / "animate" / "conftest.py",
        REPO_ROOT / "tests" / "animate" / "test_half_precision.py",
    ]
    imported = third_party_imports(entry_files)
    assert {"torch", "diffusers", "transformers", "PIL", "imageio_ffmpeg", "pytest"} <= imported
    distributions = importlib.metadata.packages_distributions()
    available = set(gpu_wheels.wheels()) | gpu_wheels.closure(gpu_wheels.GPU_MACHINE_HAS)
    missing = {name for name in imported if not {gpu_wheels.canonical(d) for d in distributions[name]} & available}
    assert not missing, f"imported by the GPU check but neither on the GPU machine nor in gpu-wheels/: {missing}"
    assert "torch" not in gpu_wheels.wheels() and "diffusers" in gpu_wheels.wheels()
