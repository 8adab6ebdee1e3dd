"""Cancelling a running prediction: it ends as canceled within moments, and the next one runs.

The prediction is created asynchronously (`Prefer: respond-async`, with an id); coglet 0.23
has no GET for predictions, so its progress is watched through webhooks to a receiver on
127.0.0.1.
"""

import time
import uuid

from tests.server.live_server import succeeded_outputs

# Long enough to still be denoising when the cancel arrives: 500 steps per keyframe.
LONG = {
    "prompt_start": "a red apple", "prompt_end": "a green pear",
    "width": 128, "height": 128, "num_inference_steps": 500, "num_animation_frames": 4,
}
# A cancel is honoured at the next Python bytecode of predict(): within one denoising step.
CANCEL_DEADLINE_S = 15


def test_cancel_stops_the_prediction_and_the_next_one_succeeds(server, webhooks):
    prediction_id = f"cancel-{uuid.uuid4().hex[:12]}"
    status, reply = server.predict_async(prediction_id, LONG, webhooks.url, ["start", "logs", "completed"])
    assert status == 202, reply
    assert reply["id"] == prediction_id

    denoising = webhooks.wait_for(prediction_id, lambda e: "step" in (e.get("logs") or ""), timeout_s=120)
    assert denoising is not None, "the prediction never started denoising"

    busy_status, busy = server.predict({**LONG, "num_inference_steps": 1}, retry_busy=False)
    assert busy_status == 409, busy  # one prediction at a time

    cancel_sent = time.monotonic()
    cancel_status, _ = server.cancel(prediction_id)
    assert cancel_status == 200
    final = webhooks.wait_for(prediction_id, lambda e: e.get("status") in {"succeeded", "failed", "canceled"}, CANCEL_DEADLINE_S)
    assert final is not None, f"no terminal webhook within {CANCEL_DEADLINE_S} s of the cancel"
    assert final["status"] == "canceled"
    assert time.monotonic() - cancel_sent < CANCEL_DEADLINE_S
    assert not final.get("output")

    assert server.wait_for_health("READY") == "READY"
    small = {**LONG, "num_inference_steps": 2, "num_animation_frames": 2, "num_interpolation_steps": 2}
    outputs = succeeded_outputs(*server.predict(small))
    assert [mime for mime, _ in outputs] == ["image/gif"]


def test_cancel_of_an_unknown_prediction_is_404(server):
    status, _ = server.cancel("no-such-prediction")
    assert status == 404
