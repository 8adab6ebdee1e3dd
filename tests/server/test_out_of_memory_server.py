"""Out of memory through the real server: predict.py's Predictor on an accelerator that runs
out of memory above chosen batch sizes (tests/server/oom_predictor.py). A prediction whose
batches split succeeds and its log shows the splits; one whose batch of one does not fit
fails in one sentence; the server is READY after either, and the next prediction runs.
"""

import pytest

from tests.server.live_server import LiveServer, succeeded_outputs
from tests.server.oom_predictor import PREDICTOR
from tests.server.test_new_inputs import data_uri, photo_like

# K = 5 keyframes, S = 3 (FILM depth 2: 4 midpoints, then 8 quarters).
REQUEST = {
    "prompt_start": "a red apple", "prompt_end": "a green pear", "width": 128, "height": 128,
    "num_inference_steps": 3, "num_animation_frames": 5, "num_interpolation_steps": 3, "seed": 11,
}
# The largest batch of each stage that fits; init_image's picture never does.
LIMITS = "keyframes=2,decode=1,FILM=2,init_image=0"


@pytest.fixture(scope="module")
def oom_server(server, tmp_path_factory):
    """A second server, on the shared server's tiny weights, serving the OutOfMemoryPredictor."""
    live = LiveServer(
        tmp_path_factory.mktemp("oom-server"), weights_dir=server.weights_dir,
        extra_env={"ANIMATE_FAKE_OOM": LIMITS}, predictor=PREDICTOR,
    )
    live.start(build_weights=False)
    live.wait_until_ready()
    live.wait_for_log_message(r"Fake accelerator memory: largest batches")
    yield live
    live.stop()


def test_a_prediction_whose_batches_split_succeeds_and_logs_each_split(oom_server):
    status, reply = oom_server.predict(REQUEST)
    outputs = succeeded_outputs(status, reply)
    assert [mime for mime, _ in outputs] == ["image/gif"]
    splits = [line.split("] ", 1)[1] for line in reply["logs"].splitlines() if "out of GPU memory" in line]
    assert splits == [
        "keyframes: out of GPU memory at 5 keyframes per batch; trying again at 2",
        "decode: out of GPU memory at 2 keyframes per batch; trying again at 1",
        "FILM: out of GPU memory at 4 pairs of frames per batch; trying again at 2",
    ]
    assert oom_server.wait_for_health("READY") == "READY"


def test_a_batch_of_one_that_does_not_fit_fails_in_one_sentence_and_the_next_prediction_runs(oom_server):
    status, reply = oom_server.predict({**REQUEST, "init_image": data_uri(photo_like())})
    assert status == 200 and reply["status"] == "failed", reply.get("status")
    assert reply["error"] == (
        "Prediction failed: Generator iteration error: GpuMemoryError: The GPU ran out of memory encoding "
        "init_image, even at one picture per batch: lower width and height, or use a checkpoint that needs less memory."
    )
    assert oom_server.wait_for_health("READY") == "READY"
    outputs = succeeded_outputs(*oom_server.predict(REQUEST))
    assert [mime for mime, _ in outputs] == ["image/gif"]
