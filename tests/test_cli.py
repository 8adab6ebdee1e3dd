"""Every command-line entry point answers --help with its whole usage and refuses an unknown
option (argparse's exit status 2), without doing anything else; and the failures a
newcomer meets first end in one sentence."""

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "script"))
import cog_server  # noqa: E402  (script/ is not a package)

# How each is typed: the scripts by their path (their #! line picks python3), the modules
# with the project's Python.
ENTRY_POINTS = {
    "script/demo": [str(REPO_ROOT / "script" / "demo")],
    "script/schema": [str(REPO_ROOT / "script" / "schema")],
    "script/soak": [str(REPO_ROOT / "script" / "soak")],
    "script/download-weights": [str(REPO_ROOT / "script" / "download-weights")],
    "script/output-hashes": [str(REPO_ROOT / "script" / "output-hashes")],
    "script/gpu-check": [str(REPO_ROOT / "script" / "gpu-check")],
    "python -m animate.tiny": [sys.executable, "-m", "animate.tiny"],
    "python -m film_net.convert": [sys.executable, "-m", "film_net.convert"],
    "python -m bench": [sys.executable, "-m", "bench"],
    "python -m bench.memory": [sys.executable, "-m", "bench.memory"],
    "python -m bench.gpu_wheels": [sys.executable, "-m", "bench.gpu_wheels"],
    "python -m bench.inputs": [sys.executable, "-m", "bench.inputs"],
    "python script/cog_server.py": [sys.executable, str(REPO_ROOT / "script" / "cog_server.py")],
}
# The modules whose work needs torch: their --help must not wait for it (seconds to import).
TORCH_MODULES = ["animate.tiny", "bench", "bench.inputs"]
# Arguments an entry point needs before argparse looks at the unknown option.
REQUIRED_ARGUMENTS = {"python -m film_net.convert": ["saved_model", "out.safetensors"], "python -m bench": ["--preset", "tiny"]}
UNKNOWN_OPTION = "--no-such-option"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[tuple[str, str], tuple[subprocess.CompletedProcess, Path]]:
    """{(entry point, "help" or "unknown"): (its finished process, the empty folder it ran in)}.

    All start at once: importing torch makes some take seconds, and they need not wait
    for each other.
    """
    started = {}
    for name, command in ENTRY_POINTS.items():
        for kind, arguments in (("help", ["--help"]), ("unknown", [*REQUIRED_ARGUMENTS.get(name, []), UNKNOWN_OPTION])):
            folder = tmp_path_factory.mktemp("cli")
            process = subprocess.Popen(
                [*command, *arguments],
                cwd=folder,
                env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            started[name, kind] = (process, command + arguments, folder)
    finished = {}
    for key, (process, command, folder) in started.items():
        stdout, stderr = process.communicate(timeout=300)
        finished[key] = (subprocess.CompletedProcess(command, process.returncode, stdout, stderr), folder)
    return finished


def description(help_text: str) -> str:
    """The first paragraph after the usage lines of an argparse --help."""
    paragraphs = help_text.split("\n\n")
    assert paragraphs[0].startswith("usage: "), help_text[:200]
    return " ".join(paragraphs[1].split())


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_help_prints_the_whole_usage_and_does_nothing_else(runs, name):
    result, folder = runs[name, "help"]
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage: ") and result.stdout.endswith("\n")
    assert "options:" in result.stdout
    # A description cut at the end of its first line ("..., and") would stop mid-sentence.
    assert description(result.stdout).endswith("."), description(result.stdout)
    assert result.stderr == ""
    assert list(folder.iterdir()) == [], "--help wrote files"


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_an_unknown_option_is_refused(runs, name):
    result, folder = runs[name, "unknown"]
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"error: unrecognized arguments: {UNKNOWN_OPTION}" in result.stderr
    assert result.stderr.startswith("usage: ")
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("module", TORCH_MODULES)
def test_help_and_wrong_arguments_are_answered_before_torch_is_imported(module):
    probe = (
        "import runpy, sys\n"
        f"sys.argv = [{module!r}, *sys.argv[1:]]\n"
        "try:\n"
        f"    runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
        "except SystemExit as exit:\n"
        "    print('exit', exit.code, 'torch imported' if 'torch' in sys.modules else 'torch not imported')\n"
    )
    for arguments, code in ((["--help"], 0), ([UNKNOWN_OPTION], 2)):
        result = subprocess.run(
            [sys.executable, "-c", probe, *arguments], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
        )
        assert result.stdout.splitlines()[-1] == f"exit {code} torch not imported", result.stdout + result.stderr


def test_a_server_whose_port_is_taken_is_reported_in_one_sentence_naming_the_port(tmp_path):
    """Within the time the server takes to fail, not the setup deadline (here 300 s)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, str(REPO_ROOT / "script" / "cog_server.py"), "--port", str(port),
             "--weights", str(tmp_path / "no-weights"), "--log", str(tmp_path / "server.log")],
            capture_output=True, text=True, timeout=120,
        )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        f"The Cog server could not listen on port {port}, which another program uses: "
        "stop that one or pick another port.\n"
    )


def test_bench_help_lists_every_preset_on_one_line(runs):
    from bench.__main__ import preset_descriptions
    from bench.presets import PRESETS

    assert set(preset_descriptions()) == set(PRESETS)
    help_text = runs["python -m bench", "help"][0].stdout
    for name, text in preset_descriptions().items():
        assert f"  {name} " in help_text and text in help_text
        assert text and "\n" not in text


def test_tiny_weights_go_to_weights_tiny_by_default(tmp_path, monkeypatch):
    from animate import tiny

    written = []  # where main() would write; nothing is written
    monkeypatch.setattr(tiny, "write_tiny_weights", lambda out_dir: written.append(out_dir) or Path(out_dir))
    assert tiny.main([]) == 0 and tiny.main([str(tmp_path / "elsewhere")]) == 0
    assert written == ["weights/tiny", str(tmp_path / "elsewhere")]


def test_convert_checks_its_input_before_loading_tensorflow(tmp_path):
    missing = tmp_path / "no-saved-model"
    probe = (
        "import sys; from film_net.convert import main; status = main(sys.argv[1:]); "
        "print('tensorflow loaded' if 'tensorflow' in sys.modules else 'tensorflow not loaded'); sys.exit(status)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(missing), str(tmp_path / "out.safetensors")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert result.stdout.strip() == "tensorflow not loaded"
    assert result.stderr.strip() == (
        f"error: {missing} does not exist: give the folder of the official SavedModel "
        "(the one that holds saved_model.pb and variables/)."
    )
    assert list(tmp_path.iterdir()) == []


def hub_environment(tmp_path: Path, **settings: str) -> dict[str, str]:
    """The environment for script/download-weights: a hub cache of its own, and none of the
    offline switches this test process inherits from animate.weights unless given."""
    offline = {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "DIFFUSERS_OFFLINE", "HF_ENDPOINT"}
    env = {name: value for name, value in os.environ.items() if name not in offline}
    return {**env, "HF_HOME": str(tmp_path / "hf-home"), **settings}


@pytest.mark.parametrize(
    "settings, advice",
    [
        ({"HF_ENDPOINT": "closed port"}, "check the network connection and that http://127.0.0.1:"),
        ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set"),
    ],
    ids=["hub unreachable", "offline mode"],
)
def test_download_weights_without_the_hub_fails_in_one_sentence(tmp_path, settings, advice):
    if settings.get("HF_ENDPOINT") == "closed port":
        settings = {"HF_ENDPOINT": f"http://127.0.0.1:{cog_server.free_port()}"}
    weights = tmp_path / "weights"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "script" / "download-weights"), "--weights", str(weights)],
        env=hub_environment(tmp_path, **settings), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1
    error = result.stderr.strip()
    assert "\n" not in error and "Traceback" not in error, result.stderr
    assert error.startswith("Could not download stable-diffusion-v1-5/stable-diffusion-v1-5")
    assert advice in error and error.endswith(".")
    assert not weights.exists()


@pytest.mark.skipif(
    Path(sys.prefix).resolve() != (REPO_ROOT / ".venv").resolve(), reason="needs the Makefile's .venv"
)
def test_download_weights_run_by_another_python_uses_the_projects_venv(tmp_path):
    """As the README types it: script/download-weights, whose #! line finds a python3
    without the project's packages (here the interpreter .venv was made from)."""
    base_python = Path(sys.base_prefix) / "bin" / "python3"
    weights = tmp_path / "weights"
    result = subprocess.run(
        [str(base_python), str(REPO_ROOT / "script" / "download-weights"), "--weights", str(weights)],
        env=hub_environment(tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{cog_server.free_port()}"),
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.strip().startswith("Could not download stable-diffusion-v1-5/stable-diffusion-v1-5 (")
    assert not weights.exists()


def test_a_bare_make_lists_the_documented_targets():
    result = subprocess.run(["make", "--no-print-directory"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    documented = [
        line.split(":")[0].removeprefix("## ")
        for line in (REPO_ROOT / "Makefile").read_text().splitlines()
        if line.startswith("## ")
    ]
    assert {"help", "demo", "test", "weights", "schema", "clean"} <= set(documented)
    listed = [line.split()[1] for line in result.stdout.splitlines()]
    assert listed == documented


def readme_decoder() -> str:
    """The Python one-liner of README.md's local-server example, which turns the server's
    reply (outputs/prediction.json) into outputs/animation.gif."""
    readme = (REPO_ROOT / "README.md").read_text()
    block = readme[readme.index("Against the local server") :]
    block = block[: block.index("\n```\n")]
    match = re.search(r"\.venv/bin/python -c '(.*?)'\n", block, re.S)
    assert match, "no .venv/bin/python -c '...' in the local-server example"
    return match.group(1)


@pytest.mark.parametrize(
    "reply, status, stdout, stderr",
    [
        (
            {"status": "succeeded", "output": ["data:image/gif;base64,R0lGODlh"]},
            0, "Wrote outputs/animation.gif\n", "",
        ),
        (
            {"status": "failed", "error": "Prediction failed: Generator iteration error: InputError: prompt_start is empty."},
            1, "", "Prediction failed: Generator iteration error: InputError: prompt_start is empty.\n",
        ),
    ],
    ids=["succeeded", "failed"],
)
def test_the_readme_example_writes_the_animation_or_the_error(tmp_path, reply, status, stdout, stderr):
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "prediction.json").write_text(json.dumps(reply))
    result = subprocess.run([sys.executable, "-c", readme_decoder()], cwd=tmp_path, capture_output=True, text=True)
    assert (result.returncode, result.stdout, result.stderr) == (status, stdout, stderr)
    written = tmp_path / "outputs" / "animation.gif"
    assert written.exists() == (status == 0)
    if status == 0:
        assert written.read_bytes() == b"GIF89a"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["outputs"]  # nothing outside outputs/


def test_download_weights_reports_a_failed_conversion_in_one_sentence(tmp_path):
    from tests.test_package import load_script

    script = load_script("download-weights")

    def failing_converter(command, check, cwd):
        raise subprocess.CalledProcessError(1, command)

    with pytest.raises(script.FetchError) as caught:
        script.fetch_film(tmp_path / "film.safetensors", lambda **_: None, run=failing_converter)
    message = str(caught.value)
    assert message.startswith("Converting FILM's SavedModel failed (exit status 1;") and "\n" not in message
