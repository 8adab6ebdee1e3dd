"""Webhooks of each kind, and outputs uploaded to --upload-url, as Cog documents them.

Cog's documentation: `webhook_events_filter` picks among `start` (once, when the
prediction starts), `output` (each time it yields an output), `logs` (as it logs) and
`completed` (once, in a terminal state); without a filter every kind is sent. Each
webhook is the whole prediction so far (id, status, logs, output). With `--upload-url`,
the server PUTs each output file to <upload-url><file name> and returns the URL the
upload's `Location` header gives, without its query (the PUT URL when there is none),
instead of a data URI; a refused upload fails the prediction.

What coglet 0.23.1 does beyond that, as pinned down here: uploads carry the file's
Content-Type and an X-Prediction-ID header; they run concurrently, so with
--upload-url the keyframe URLs may come in any order (the animation, yielded last, is
always last): clients should order keyframes by name (keyframe-NNN.png). Webhooks, too,
are sent concurrently and may arrive out of order: the one with the most outputs (or
the terminal one) is the latest.
"""

import io
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from PIL import Image

from animate import KeyframePlan
from tests.server.live_server import LiveServer, cog_server
from tests.server.media import gif_info, mp4_info, png_size

SMALL = {"prompt_start": "a red apple", "prompt_end": "a green pear", "width": 128, "height": 128,
         "num_inference_steps": 2}
# Three keyframes yielded as PNGs, then a GIF of 5 frames.
STREAMING = {**SMALL, "num_animation_frames": 3, "num_interpolation_steps": 2, "intermediate_output": True}
PLAN = KeyframePlan(num_prompts=2, keyframes_per_segment=3, interpolation_steps=2)
KEYFRAME_NAMES = [f"keyframe-{index:03d}.png" for index in range(PLAN.num_keyframes)]
TERMINAL = {"succeeded", "failed", "canceled"}


def events_of(webhooks, prediction_id: str) -> list[dict]:
    with webhooks.changed:
        return [event for event in webhooks.events if event.get("id") == prediction_id]


def settled_events(server, webhooks, prediction_id: str, quiet_s: float = 1.5, timeout_s: float = 120) -> list[dict]:
    """The prediction's webhooks once it has finished and none has arrived for quiet_s."""
    deadline = time.monotonic() + timeout_s
    # Started, then back to READY: the prediction is over.
    while not events_of(webhooks, prediction_id) and server.health() == "READY" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.wait_for_health("READY", timeout_s=timeout_s) == "READY"
    count, last_change = -1, time.monotonic()
    while time.monotonic() - last_change < quiet_s and time.monotonic() < deadline:
        current = len(events_of(webhooks, prediction_id))
        if current != count:
            count, last_change = current, time.monotonic()
        time.sleep(0.05)
    return events_of(webhooks, prediction_id)


def run_async(server, webhooks, events: list[str] | None, request: dict = STREAMING) -> tuple[str, list[dict]]:
    prediction_id = f"hooks-{uuid.uuid4().hex[:10]}"
    body = {"id": prediction_id, "input": request, "webhook": webhooks.url}
    if events is not None:
        body["webhook_events_filter"] = events
    status, reply = cog_server.post_json(
        f"{server.base_url}/predictions", body, headers={"Prefer": "respond-async"}, timeout=30
    )
    assert status == 202 and reply["id"] == prediction_id, reply
    return prediction_id, settled_events(server, webhooks, prediction_id)


def mime_of(uri: str) -> str:
    return uri.split(";", 1)[0].removeprefix("data:")


def test_start_filter_sends_one_event_when_the_prediction_starts(server, webhooks):
    _, events = run_async(server, webhooks, ["start"])
    assert len(events) == 1, events
    assert events[0]["status"] == "processing" and not events[0].get("output")


def test_output_filter_sends_each_output_as_it_is_yielded(server, webhooks):
    _, events = run_async(server, webhooks, ["output"])
    print(f"\noutput webhooks arrived with {[len(event['output']) for event in events]} outputs")
    # One webhook per output, each the outputs so far: keyframe PNGs first, the GIF last.
    # They are sent concurrently and may arrive in any order.
    outputs = sorted((event["output"] for event in events), key=len)
    assert [len(output) for output in outputs] == list(range(1, PLAN.num_keyframes + 2)), outputs
    assert all(event["status"] == "processing" for event in events)
    assert [mime_of(uri) for uri in outputs[-1]] == ["image/png"] * PLAN.num_keyframes + ["image/gif"]
    for earlier, later in zip(outputs, outputs[1:]):
        assert later[: len(earlier)] == earlier, "an output changed after it was sent"


def test_logs_filter_sends_the_growing_log_and_nothing_terminal(server, webhooks):
    _, events = run_async(server, webhooks, ["logs"])
    assert events and all(event["status"] == "processing" for event in events)
    logs = sorted((event.get("logs") or "" for event in events), key=len)  # arrival order may differ
    for earlier, later in zip(logs, logs[1:]):
        assert later.startswith(earlier), "logs must only grow"
    assert "Using seed:" in logs[-1]


def test_completed_filter_sends_one_final_event_with_every_output(server, webhooks):
    _, events = run_async(server, webhooks, ["completed"])
    assert len(events) == 1, events
    final = events[0]
    assert final["status"] == "succeeded"
    assert [mime_of(uri) for uri in final["output"]] == ["image/png"] * PLAN.num_keyframes + ["image/gif"]
    assert "encoding took" in final["logs"]
    assert final["metrics"]["predict_time"] > 0


def test_no_filter_sends_every_kind(server, webhooks):
    _, events = run_async(server, webhooks, None)
    assert any(event["status"] == "processing" and not event.get("output") for event in events)  # start
    assert [event["status"] for event in events if event["status"] in TERMINAL] == ["succeeded"]
    output_counts = {len(event.get("output") or []) for event in events if event["status"] == "processing"}
    assert set(range(1, PLAN.num_keyframes + 2)) <= output_counts  # every output event
    assert len(events) >= 1 + (PLAN.num_keyframes + 1) + 1


class UploadReceiver:
    """An upload endpoint on 127.0.0.1: stores each PUT under the prediction id and the file
    name, answers with a Location of its own (with a query, as signed URLs have), and
    serves stored files back on GET."""

    def __init__(self):
        self.status = 201  # what PUT answers; set to 500 to refuse uploads
        self.files: dict[tuple[str, str], bytes] = {}
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.status >= 300:
                    self.send_response(receiver.status)
                    self.end_headers()
                    return
                name = self.path.rsplit("/", 1)[1]
                prediction_id = self.headers.get("X-Prediction-ID", "")
                with receiver.lock:
                    receiver.files[(prediction_id, name)] = body
                    receiver.requests.append({
                        "path": self.path, "prediction_id": prediction_id, "size": len(body),
                        "headers": {key.lower(): value for key, value in self.headers.items()},
                    })
                self.send_response(receiver.status)
                self.send_header("Location", f"{receiver.base}/files/{prediction_id}/{name}?token=abc")
                self.end_headers()

            def do_GET(self):
                _, _, prediction_id, name = urlsplit(self.path).path.split("/", 3)
                body = receiver.files.get((prediction_id, name))
                self.send_response(200 if body is not None else 404)
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.http.server_address[1]}"
        self.upload_url = f"{self.base}/upload/"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self):
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture(scope="module")
def uploads():
    receiver = UploadReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def upload_server(server, uploads, tmp_path_factory):
    """A second real server, with the session server's tiny weights and --upload-url."""
    live = LiveServer(
        tmp_path_factory.mktemp("upload-server"),
        weights_dir=server.weights_dir,
        extra_args=("--upload-url", uploads.upload_url),
    )
    live.start(build_weights=False)
    try:
        live.wait_until_ready()
        yield live
    finally:
        live.stop()


def fetched(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def test_uploaded_files_arrive_whole_and_the_output_points_at_them(upload_server, uploads):
    status, reply = cog_server.post_json(f"{upload_server.base_url}/predictions", {"input": STREAMING}, timeout=300)
    assert status == 200 and reply["status"] == "succeeded", reply.get("error")
    prediction_id = reply["id"]
    urls = reply["output"]
    print(f"\noutput order with --upload-url: {[url.rsplit('/', 1)[1] for url in urls]}")

    # The output holds the Location URLs without their query; the animation is last.
    names = [urlsplit(url).path.rsplit("/", 1)[1] for url in urls]
    assert urls == [f"{uploads.base}/files/{prediction_id}/{name}" for name in names]
    assert sorted(names[:-1]) == KEYFRAME_NAMES and names[-1] == "animation.gif"

    requests = [r for r in uploads.requests if r["prediction_id"] == prediction_id]
    assert sorted(r["path"] for r in requests) == sorted(f"/upload/{name}" for name in names)
    for request in requests:
        expected_type = "image/gif" if request["path"].endswith(".gif") else "image/png"
        assert request["headers"]["content-type"] == expected_type
        assert int(request["headers"]["content-length"]) == request["size"] > 0

    for url, name in zip(urls, names):
        data = fetched(url)
        assert data == uploads.files[(prediction_id, name)]
        if name.endswith(".png"):
            assert png_size(data) == (128, 128)
            with Image.open(io.BytesIO(data)) as image:
                image.load()  # every byte present
    gif = gif_info(uploads.files[(prediction_id, "animation.gif")])
    assert gif.frames == PLAN.num_frames and gif.size == (128, 128)


def test_async_upload_webhooks_carry_the_upload_urls(upload_server, uploads, webhooks):
    prediction_id, events = run_async(upload_server, webhooks, ["output", "completed"])
    (final,) = [event for event in events if event["status"] in TERMINAL]
    assert final["status"] == "succeeded", final.get("error")
    assert all(url.startswith(f"{uploads.base}/files/{prediction_id}/") for url in final["output"])
    # Keyframes reach the client before the animation (several may share a webhook, as
    # their uploads finish together).
    partial = sorted((event["output"] for event in events if event["status"] == "processing"), key=len)
    assert partial and all(url.endswith(".png") for url in partial[0])
    stored = sorted(name for pid, name in uploads.files if pid == prediction_id)
    assert stored == sorted([*KEYFRAME_NAMES, "animation.gif"])


def test_uploaded_mp4_plays_from_the_start(upload_server, uploads, tmp_path):
    request = {**SMALL, "num_animation_frames": 2, "num_interpolation_steps": 3, "output_format": "mp4"}
    status, reply = cog_server.post_json(f"{upload_server.base_url}/predictions", {"input": request}, timeout=300)
    assert status == 200 and reply["status"] == "succeeded", reply.get("error")
    (url,) = reply["output"]
    request_headers = [r["headers"] for r in uploads.requests if r["prediction_id"] == reply["id"]]
    assert [headers["content-type"] for headers in request_headers] == ["video/mp4"]
    video = mp4_info(fetched(url), tmp_path)
    assert video.frames == 4 and video.codec == "h264" and video.moov_before_mdat


def test_failed_upload_fails_the_prediction_and_the_server_recovers(upload_server, uploads):
    """An upload endpoint that answers 500: the prediction fails with coglet's sentence."""
    uploads.status = 500
    try:
        status, reply = upload_server.predict(SMALL)
    finally:
        uploads.status = 201
    assert status == 200 and reply["status"] == "failed"
    assert reply["error"] == "Failed to upload output: upload returned status 500 Internal Server Error"
    assert upload_server.wait_for_health("READY") == "READY"
    status, reply = upload_server.predict(SMALL)
    assert status == 200 and reply["status"] == "succeeded", reply.get("error")
