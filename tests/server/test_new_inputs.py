"""The first four inputs beyond the hosted model's, through the real server (the fifth,
upscale: test_upscale_server.py).

negative_prompt, init_image, scheduler and disable_safety_checker are each accepted and
change the animation where they should, and leave it (with upscale too) byte for byte as it
was at their defaults. init_image arrives as a data URI or an http URL, which the server fetches into a
file; a hostile picture ends as a one-sentence failure or a success, and the server is
READY afterwards. Requests are small (128x128, 4 steps, 2 keyframes, S = 2): a fraction of
a second each with the tiny weights.
"""

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from tests.images import BLUE, GREEN, RED, black_rows, cut_short, encoded, exif_rotated_jpeg, one_bit_png
from tests.server.live_server import succeeded_outputs
from tests.server.test_bad_input_battery import assert_refused, failed_sentence, send, with_input
from tests.test_schema import EXTRA_INPUTS

# prompt_strength 0.5 of 4 steps: 2 shared steps, then 2 per keyframe, so an init image
# is noised half-way and stays visible.
REQUEST = {
    "prompt_start": "a red apple", "prompt_end": "a green pear", "width": 128, "height": 128,
    "num_inference_steps": 4, "prompt_strength": 0.5, "num_animation_frames": 2,
    "num_interpolation_steps": 2, "seed": 11,
}
SCHEDULERS = EXTRA_INPUTS["scheduler"]["enum"]


def animation(server, **changes) -> tuple[bytes, str]:
    """(the animation's bytes, the log) of REQUEST with changes; it must succeed."""
    status, reply = server.predict({**REQUEST, **changes})
    outputs = succeeded_outputs(status, reply)
    return outputs[-1][1], reply["logs"]


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def photo_like(width: int = 96, height: int = 64) -> bytes:
    """A smooth colour gradient as a PNG, red across and green down."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    pixels = np.stack(np.broadcast_arrays(x, y, 255 - y), axis=-1)
    return encoded(Image.fromarray(pixels.astype(np.uint8)), "PNG")


@pytest.fixture(scope="module")
def default_animation(server) -> bytes:
    """REQUEST without any of the four inputs: what the package made before they existed."""
    return animation(server)[0]


class PictureHost:
    """Serves files from memory at http://127.0.0.1:<port>/<name>; 404 for other names."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                data = host.files.get(self.path.lstrip("/"))
                self.send_response(200 if data is not None else 404)
                self.send_header("Content-Length", str(len(data or b"")))
                self.end_headers()
                self.wfile.write(data or b"")

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def url(self, name: str, data: bytes | None = None) -> str:
        """The URL of name, serving data there (None: nothing there, a 404)."""
        if data is not None:
            self.files[name] = data
        return f"http://127.0.0.1:{self.http.server_address[1]}/{name}"

    def close(self):
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def picture_host() -> PictureHost:
    host = PictureHost()
    yield host
    host.close()


# Defaults


def test_the_extra_inputs_at_their_defaults_change_no_byte(server, default_animation):
    # init_image's default is its absence: a null is refused, as for every input (below).
    at_defaults, _ = animation(
        server, negative_prompt="", scheduler="default", disable_safety_checker=False, upscale="none"
    )
    assert at_defaults == default_animation


@pytest.mark.parametrize("name", EXTRA_INPUTS)
def test_null_is_refused_for_the_new_inputs_too(server, name):
    assert_refused(*send(server, with_input(**{name: None})), {name})
    assert server.wait_for_health("READY") == "READY"


# negative_prompt


def test_a_negative_prompt_changes_the_animation(server, default_animation):
    assert animation(server, negative_prompt="blurry, dark, text")[0] != default_animation


def test_a_negative_prompt_no_one_could_mean_fails_in_one_sentence(server):
    status, _, text = send(server, with_input(negative_prompt="x" * 20_001))
    assert failed_sentence(status, text).startswith("negative_prompt is 20,001 characters long")
    assert server.wait_for_health("READY") == "READY"


def test_a_long_negative_prompt_is_cut_like_a_prompt_and_the_log_says_so(server):
    _, log = animation(server, negative_prompt="blurry | dark " * 40)  # "|" is an ordinary character here
    [cut] = [line for line in log.splitlines() if "tokens were cut" in line]
    assert cut.startswith("The negative prompt is ") and len(cut) < 300


# init_image


def test_an_init_image_as_a_data_uri_changes_the_animation(server, default_animation):
    started, log = animation(server, init_image=data_uri(photo_like()))
    assert started != default_animation
    assert "init_image: 96x64 PNG (RGB), scaled and cropped to 128x128" in log.splitlines()
    # The server removes the file it downloaded the picture into: uploads do not pile up.
    assert [path.name for path in (server.work_dir / "tmp").iterdir() if path.is_file()] == []


def test_an_init_image_url_is_fetched_and_gives_what_the_same_data_uri_gives(server, picture_host):
    picture = photo_like()
    from_url, log = animation(server, init_image=picture_host.url("photo.png", picture))
    from_data_uri, _ = animation(server, init_image=data_uri(picture))
    assert from_url == from_data_uri
    assert "init_image: 96x64 PNG (RGB), scaled and cropped to 128x128" in log.splitlines()


def test_an_init_image_url_the_server_cannot_fetch_fails_the_prediction(server, picture_host):
    status, reply = server.predict({**REQUEST, "init_image": picture_host.url("gone.png")})
    assert status == 200 and reply["status"] == "failed", reply
    assert "404" in reply["error"]  # coglet's own message, before predict() runs
    assert server.wait_for_health("READY") == "READY"


@pytest.mark.parametrize("value", ["/etc/hostname", "photo.jpg", "file:///etc/hostname", ""],
                         ids=["absolute-path", "relative-path", "file-url", "empty"])
def test_a_path_on_the_server_is_never_read(server, value):
    status, _, text = send(server, with_input(init_image=value))
    assert failed_sentence(status, text) == (
        "init_image must be an http or https URL or a data URI of a picture: "
        "the model reads only the file the server downloads."
    )
    assert server.wait_for_health("READY") == "READY"


def rgba_png() -> bytes:
    image = Image.new("RGBA", (32, 32), (*RED, 255))
    image.paste((0, 0, 0, 0), (16, 0, 32, 32))
    return encoded(image, "PNG")


def palette_png() -> bytes:
    image = Image.new("P", (32, 32), 1)
    image.putpalette([0, 0, 0, *GREEN])
    image.paste(0, (0, 0, 16, 32))
    return encoded(image, "PNG", transparency=0)


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (32, 32), colour) for colour in (RED, GREEN, BLUE)]
    return encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


def grey_16_bit_png() -> bytes:
    return encoded(Image.fromarray(np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (64, 1))), "PNG")


# (id, file bytes, its data URI's type, what must happen: "fails: <start of the sentence>"
# or "succeeds: <a part of the log line describing the picture>")
HOSTILE_PICTURES = [
    ("zero-bytes", lambda: b"", "image/png", "fails: init_image is an empty file (0 bytes)"),
    ("text-named-png", lambda: b"not a picture\n", "image/png",
     "fails: init_image is a 14-byte file that is not a picture Pillow can read"),
    ("truncated-png", lambda: cut_short("PNG"), "image/png", "fails: init_image could not be decoded as PNG"),
    ("truncated-jpeg", lambda: cut_short("JPEG"), "image/jpeg", "fails: init_image could not be decoded as JPEG"),
    ("41-megapixels", lambda: encoded(Image.new("1", (8000, 5125)), "PNG"), "image/png",
     "fails: init_image is 8000x5125 (41,000,000 pixels), over the limit of 40,000,000 pixels"),
    ("decompression-bomb", lambda: one_bit_png(20_000, 20_000, black_rows(20_000, 20_000)), "image/png",
     "fails: init_image has more than 179 megapixels"),
    ("1x1", lambda: encoded(Image.new("RGB", (1, 1), RED), "PNG"), "image/png", "succeeds: 1x1 PNG (RGB)"),
    ("cmyk-jpeg", lambda: encoded(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG"), "image/jpeg",
     "succeeds: 32x32 JPEG (CMYK)"),
    ("16-bit-png", grey_16_bit_png, "image/png", "succeeds: 64x64 PNG (I;16)"),
    ("rgba-png", rgba_png, "image/png", "succeeds: 32x32 PNG (RGBA), transparency on white"),
    ("palette-png", palette_png, "image/png", "succeeds: 32x32 PNG (P), transparency on white"),
    ("animated-gif", animated_gif, "image/gif", "succeeds: 32x32 GIF (P), first frame"),
    ("exif-rotated-jpeg", lambda: exif_rotated_jpeg(6), "image/jpeg",
     "succeeds: 40x20 JPEG (RGB), EXIF orientation 6 applied"),
]


@pytest.mark.parametrize("make, mime, outcome", [case[1:] for case in HOSTILE_PICTURES],
                         ids=[case[0] for case in HOSTILE_PICTURES])
def test_a_hostile_picture_fails_in_one_sentence_or_succeeds(server, make, mime, outcome):
    expected, detail = outcome.split(": ", 1)
    status, _, text = send(server, with_input(init_image=data_uri(make(), mime), seed=3))
    if expected == "fails":
        assert failed_sentence(status, text).startswith(detail)
    else:
        reply = json.loads(text)
        succeeded_outputs(status, reply)
        assert f"init_image: {detail}" in reply["logs"]
    assert server.wait_for_health("READY", timeout_s=60) == "READY"


# scheduler


def test_scheduler_default_is_leaving_it_out(server, default_animation):
    assert animation(server, scheduler="default")[0] == default_animation


def test_pndm_by_name_is_the_default_of_sd_weights(server, default_animation):
    # The tiny weights ship SD 1.5's scheduler: PNDM, with SD 1.5's configuration.
    assert animation(server, scheduler="PNDM")[0] == default_animation


@pytest.mark.parametrize("name", [name for name in SCHEDULERS if name not in ("default", "PNDM")])
def test_another_scheduler_changes_the_animation(server, default_animation, name):
    sampled, log = animation(server, scheduler=name)
    assert sampled != default_animation
    assert name in log


def test_a_stochastic_scheduler_gives_the_same_bytes_for_the_same_seed(server):
    first, _ = animation(server, scheduler="K_EULER_ANCESTRAL")
    assert animation(server, scheduler="K_EULER_ANCESTRAL")[0] == first
    assert animation(server, scheduler="K_EULER_ANCESTRAL", seed=12)[0] != first


@pytest.mark.parametrize("value", ["euler", "k_euler", "Default", "", 3])
def test_a_scheduler_outside_the_choices_is_422(server, value):
    assert_refused(*send(server, with_input(scheduler=value)), {"scheduler"})
    assert server.wait_for_health("READY") == "READY"


# disable_safety_checker


def test_disabling_the_absent_safety_checker_changes_nothing(server, default_animation):
    # The tiny weights have no safety checker, so there is nothing to skip.
    assert animation(server, disable_safety_checker=True)[0] == default_animation
