"""script/demo's choice of weights, and its progress display: reading the model's lines out
of coglet's log and showing them while the prediction runs. No server here; the records are
coglet 0.23.1's format."""

import io
import json
import shutil
import threading
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.test_package import load_script

demo = load_script("demo")

PREDICTION_ID = "demo-0123456789ab"


def record(message: str, prediction_id: str = PREDICTION_ID, source: str | None = "Stdout") -> str:
    """One line of the server's log, as coglet 0.23.1 writes a line the worker printed."""
    fields = {"message": message, "prediction_id": prediction_id}
    if source is not None:
        fields["source"] = source
    return json.dumps(
        {"timestamp": "2026-11-25T16:19:22.627696Z", "level": "INFO", "fields": fields, "target": "coglet::prediction"}
    )


@pytest.mark.parametrize(
    "line, expected",
    [
        ("[   12.3s] keyframes: step 12/40, keyframes 1-4 of 10", (12.3, "keyframes", "step 12/40, keyframes 1-4 of 10")),
        ("[   52.0s] in-betweens: 23/46 frames (FILM)", (52.0, "in-betweens", "23/46 frames (FILM)")),
        ("[   60.0s] encoding: animation.gif took 2.1 s", (60.0, "encoding", "animation.gif took 2.1 s")),
        ("[ 1234.5s] shared start: step 3/8", (1234.5, "shared start", "step 3/8")),
        ("Using seed: 42", None),
        ("keyframes 1-4 of 10: step 3/40", None),
        ("[12.3] keyframes: step 1/2", None),
    ],
)
def test_progress_lines_are_taken_apart(line, expected):
    progress = demo.parse_progress(line)
    if expected is None:
        assert progress is None
    else:
        assert (progress.elapsed_s, progress.stage, progress.detail) == expected


@pytest.mark.parametrize(
    "line, expected",
    [
        ("[   12.3s] keyframes: step 12/40, keyframes 1-4 of 10", ("keyframes", 12, 40)),
        ("[   52.0s] in-betweens: 23/46 frames (FILM)", ("in-betweens", 23, 46)),
        ("frames interpolated: 3/11", ("frames interpolated", 3, 11)),  # the walk's older lines
        ("[   60.0s] encoding: animation.gif took 2.1 s", None),
        ("Walk over 2 prompts: 3 keyframes, 11 frames, 20 in the animation", None),
    ],
)
def test_counting_lines_are_recognised(line, expected):
    assert demo.count_of(line) == expected


def test_only_the_predictions_prints_are_read_from_the_log():
    assert demo.worker_line(record("[    0.1s] text: took 0.0 s"), PREDICTION_ID) == "[    0.1s] text: took 0.0 s"
    assert demo.worker_line(record("a warning", source="Stderr"), PREDICTION_ID) == "a warning"
    assert demo.worker_line(record("Starting prediction", source=None), PREDICTION_ID) is None  # coglet's own
    assert demo.worker_line(record("Using seed: 1", prediction_id="pred_other"), PREDICTION_ID) is None
    assert demo.worker_line('{"fields": {"message": "Server ready"}, "target": "coglet"}', PREDICTION_ID) is None
    assert demo.worker_line("not json", PREDICTION_ID) is None
    assert demo.worker_line("[1, 2]", PREDICTION_ID) is None
    assert demo.worker_line(record("\rbar:  10%\rbar: 100%"), PREDICTION_ID) == "bar: 100%"


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_away_from_a_terminal_counting_lines_are_thinned_out():
    stream, clock = io.StringIO(), FakeClock()
    display = demo.ProgressDisplay(stream, terminal=False, clock=clock)
    display.show("Using seed: 7")
    for step in range(41):  # one step a second
        clock.now = float(step)
        display.show(f"[{step:7.1f}s] keyframes: step {step}/40, keyframes 1-4 of 10")
    display.show("[   40.5s] keyframes: took 40.5 s")
    for frame in range(1, 47):
        display.show(f"[   41.0s] in-betweens: {frame}/46 frames (FILM)")
    lines = stream.getvalue().splitlines()
    steps = [line for line in lines if "step" in line]
    # The stage's first count, one every COUNT_EVERY_S, and its last.
    assert [line.split("step ")[1].split("/")[0] for line in steps] == ["0", "10", "20", "30", "40"]
    assert [line for line in lines if "in-betweens" in line] == [
        "[   41.0s] in-betweens: 1/46 frames (FILM)",
        "[   41.0s] in-betweens: 46/46 frames (FILM)",
    ]
    assert lines[0] == "Using seed: 7" and "[   40.5s] keyframes: took 40.5 s" in lines
    assert "\r" not in stream.getvalue()


def test_on_a_terminal_counting_lines_share_one_status_line():
    stream = io.StringIO()
    display = demo.ProgressDisplay(stream, terminal=True)
    for step in range(1, 4):
        display.show(f"[{step:7.1f}s] keyframes: step {step}/3, keyframes 1-4 of 10")
    display.show("[    3.5s] keyframes: took 3.5 s")
    display.end_status_line()
    text = stream.getvalue()
    assert text.count("\r\x1b[K") == 3
    assert text.endswith("step 3/3, keyframes 1-4 of 10\n[    3.5s] keyframes: took 3.5 s\n")
    assert text.count("\n") == 2


def test_the_log_is_followed_while_it_is_written(tmp_path):
    """Lines come while the log grows, a record split across two writes included; the
    follower stops once the prediction is answered and the log is read to its end."""
    log_path = tmp_path / "server.log"
    log_path.write_text(record("Starting prediction", source=None) + "\n")
    finished = threading.Event()
    stream = io.StringIO()
    lines = ["Using seed: 5", "[    0.1s] text: took 0.0 s", "[    0.2s] in-betweens: 1/2 frames (FILM)", "done"]

    def server():
        with open(log_path, "a") as log:
            for line in lines:
                text = record(line) + "\n"
                log.write(text[:20])
                log.flush()
                log.write(text[20:])
                log.flush()
            log.write(record("Using seed: 9", prediction_id="pred_other") + "\n")
        finished.set()

    writer = threading.Thread(target=server)
    writer.start()
    demo.follow_log(log_path, PREDICTION_ID, demo.ProgressDisplay(stream, terminal=False), finished)
    writer.join()
    assert stream.getvalue().splitlines() == lines


@pytest.mark.parametrize(
    "status, reply, expected",
    [
        (
            200,
            {"status": "failed", "error": "Prediction failed: Generator iteration error: InputError: prompt_start is empty."},
            "The prediction failed: Prediction failed: Generator iteration error: InputError: prompt_start is empty.",
        ),
        (
            422,
            {"detail": [{"loc": ["body", "input", "width"], "msg": "Input should be 128, 256, 512, 768 or 1024", "type": "enum"}]},
            "The server refused the request (HTTP 422): width (Input should be 128, 256, 512, 768 or 1024).",
        ),
    ],
)
def test_a_failure_is_one_sentence(status, reply, expected):
    assert demo.failure_sentence(status, reply) == expected


@pytest.fixture
def real_weights(tmp_path, monkeypatch, tiny_weights):
    """An empty weights/ in tmp_path as the demo's real weights folder, and a function that
    fills it with a copy of the tiny weights less the given parts."""
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setattr(demo, "REAL_WEIGHTS", folder)

    def fill(*without: str) -> Path:
        shutil.copytree(tiny_weights, folder, dirs_exist_ok=True)
        for part in without:
            (folder / part).unlink()
        return folder

    return fill


def test_without_real_weights_the_demo_runs_the_tiny_ones_and_says_why(real_weights):
    chosen, sentence = demo.choose_weights(None, {})
    assert chosen == REPO_ROOT / "weights" / "tiny"
    assert sentence.startswith("Weights: the tiny random Stable Diffusion 1.5 in weights/tiny, since weights/ holds no ")
    assert sentence.count(". ") == 0 and sentence.endswith(".")


@pytest.mark.parametrize(
    "part, named",
    [
        ("stable-diffusion/unet/diffusion_pytorch_model.safetensors", "stable-diffusion/unet/*.safetensors"),
        ("stable-diffusion/text_encoder/config.json", None),
        ("stable-diffusion/vae/config.json", None),
        ("stable-diffusion/scheduler/scheduler_config.json", None),
        ("film_net/film_net_style.safetensors", None),
    ],
)
def test_half_downloaded_real_weights_are_not_chosen_and_the_missing_part_is_named(real_weights, part, named):
    real_weights(part)
    chosen, sentence = demo.choose_weights(None, {})
    assert chosen == REPO_ROOT / "weights" / "tiny"
    assert f"since weights/ is incomplete: weights/{named or part} is missing (" in sentence
    assert sentence.count(". ") == 0 and sentence.endswith(".")


def test_complete_real_weights_are_chosen_unless_another_checkpoint_is_asked_for(real_weights):
    folder = real_weights()
    assert demo.choose_weights(None, {}) == (folder, "Weights: the real ones in weights/.")
    # The tiny SD 1.5's UNet reads text 32 wide, no real checkpoint's width: not SDXL.
    chosen, sentence = demo.choose_weights("sdxl", {})
    assert chosen == REPO_ROOT / "weights" / "tiny-sdxl"
    assert "since weights/ holds another checkpoint than SDXL;" in sentence


def test_the_way_to_fetch_is_the_asked_for_checkpoints(real_weights):
    assert "(`make real-weights` fetches them)" in demo.choose_weights(None, {})[1]
    assert "(`script/download-weights --checkpoint sdxl` fetches them)" in demo.choose_weights("sdxl", {})[1]


def test_animate_weights_is_taken_as_given(real_weights):
    assert demo.choose_weights("sdxl", {"ANIMATE_WEIGHTS": "/somewhere"}) == (
        Path("/somewhere"), "Weights: /somewhere, as ANIMATE_WEIGHTS says."
    )


def test_the_demos_tiny_folders_are_where_animate_tiny_writes_each_kind():
    from animate.tiny import DEFAULT_OUT_DIRS

    assert {kind: folder for _, kind, folder in demo.CHECKPOINTS.values()} == DEFAULT_OUT_DIRS
