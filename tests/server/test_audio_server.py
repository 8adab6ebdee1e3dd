"""The audio input through the real server: a sound track arrives as a data URI, the MP4
comes back with the sound over its whole length, and every hostile sound file of the issue
ends in one sentence, before any model runs, or in a success; the server is READY after.

Requests are small (128x128, 4 steps, 2 keyframes, S = 2, MP4): a fraction of a second each
with the tiny weights.
"""

import base64
import json
import re

import numpy as np
import pytest

from animate.inputs.audio import SAMPLE_RATE
from animate.output.mp4 import AUDIO_RATE
from tests.conftest import REPO_ROOT
from tests.audio import clicks, converted, decoded_audio_samples, ffmpeg_output, lying_wav, tone, video, wav
from tests.server.live_server import succeeded_outputs
from tests.server.media import mp4_info
from tests.server.test_bad_input_battery import COGLET_PREFIX, failed_sentence, send, with_input
from tests.server.test_new_inputs import REQUEST, animation

SOUND_REQUEST = {**REQUEST, "output_format": "mp4"}
# What the log shows once a model has run: the sampler is named before the first step.
MODEL_RAN = "Sampler: "


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def sound_walk(server, sound: bytes, mime: str = "audio/wav", **changes) -> tuple[bytes, str]:
    """(the MP4's bytes, the log) of SOUND_REQUEST with the sound and changes; it must succeed."""
    status, reply = server.predict({**SOUND_REQUEST, "audio": data_uri(sound, mime), **changes})
    outputs = succeeded_outputs(status, reply)
    assert [kind for kind, _ in outputs] == ["video/mp4"]
    return outputs[-1][1], reply["logs"]


def streams_and_lengths(mp4: bytes, scratch_dir) -> tuple[int, float, float]:
    """(streams, video seconds, sound seconds) of an MP4, each stream decoded whole by ffmpeg."""
    info = mp4_info(mp4, scratch_dir)
    sound_seconds = decoded_audio_samples(scratch_dir / "probe.mp4") / AUDIO_RATE
    return info.frames, info.frames / info.fps, sound_seconds


def test_a_sound_track_comes_back_in_the_mp4_over_its_whole_length(server, tmp_path):
    mp4, log = sound_walk(server, wav(clicks(2.0), SAMPLE_RATE))
    # K = 2: the sound's 2 s at 20 fps are the 40 frames of the one gap and the last keyframe.
    frames, video_seconds, sound_seconds = streams_and_lengths(mp4, tmp_path)
    assert frames == 40
    assert sound_seconds == video_seconds == pytest.approx(2.0)
    assert "audio: 2.00 s, 40 frames at 20 fps; the music (audio_pace_strength 0.5) gives the 1 gaps 39 to 39 frames" in log
    # The same seed and sound give the same bytes.
    assert sound_walk(server, wav(clicks(2.0), SAMPLE_RATE))[0] == mp4


def test_the_seed_example_with_20_seconds_of_clicks_at_120_bpm(server, tmp_path):
    """script/example-request.json at 128x128 and 4 steps, without ping-pong (which cannot
    follow a sound), with a 20 s clip of clicks at 120 bpm as an MP3: an MP4 with both
    streams, as long as each other; the music asks for round(20 * 20) = 400 frames."""
    example = json.loads((REPO_ROOT / "script" / "example-request.json").read_text())["input"]
    clip = converted(wav(clicks(20.0, rate=44100, channels=2), 44100), ".mp3")
    request = {**example, "width": 128, "height": 128, "num_inference_steps": 4, "gif_ping_pong": False, "seed": 5}
    mp4, log = sound_walk(server, clip, "audio/mpeg", **request)
    frames, video_seconds, sound_seconds = streams_and_lengths(mp4, tmp_path)
    [planned] = re.findall(r"Walk over 2 prompts: 25 keyframes, (\d+) frames", log)
    assert frames == int(planned) == 400
    assert abs(sound_seconds - video_seconds) < 1 / 20
    [audio_line] = [line for line in log.splitlines() if "] audio: " in line and " fps; " in line]
    assert "audio: 20.0" in audio_line and ", 400 frames at 20 fps; " in audio_line and "the 24 gaps" in audio_line


def test_audio_pace_strength_without_audio_changes_no_byte(server):
    plain = animation(server, output_format="mp4")[0]
    assert animation(server, output_format="mp4", audio_pace_strength=0.9)[0] == plain


@pytest.mark.parametrize("value", [-0.01, 1.01, "strong"])
def test_audio_pace_strength_outside_0_to_1_is_422(server, value):
    status, _, text = send(server, with_input(audio_pace_strength=value))
    assert status == 422 and json.loads(text)["detail"][0]["loc"] == ["body", "input", "audio_pace_strength"]
    assert server.wait_for_health("READY") == "READY"


@pytest.mark.parametrize(
    "changes, sentence",
    [
        ({"output_format": "gif"}, "audio needs output_format mp4, not gif: a GIF has no sound, so ask for an MP4."),
        ({"gif_ping_pong": True}, "audio cannot be used with gif_ping_pong: the animation follows the sound track, "
                                  "which does not play backwards, so set gif_ping_pong to false."),
    ],
    ids=["gif", "ping-pong"],
)
def test_audio_with_a_gif_or_ping_pong_fails_before_any_model_runs(server, changes, sentence):
    sound = data_uri(wav(tone(1.0), SAMPLE_RATE), "audio/wav")
    status, _, text = send(server, with_input(**{**SOUND_REQUEST, "audio": sound, **changes}))
    assert failed_sentence(status, text) == sentence
    assert MODEL_RAN not in json.loads(text)["logs"]
    assert server.wait_for_health("READY") == "READY"


def silent_mp3(seconds: float) -> bytes:
    """seconds of silence as an 8 kbit/s mono MP3: 301 s in 300 KB."""
    return ffmpeg_output(
        ["-f", "lavfi", "-i", f"anullsrc=r=8000:cl=mono:d={seconds}", "-c:a", "libmp3lame", "-b:a", "8k"], ".mp3"
    )


def truncated_mp3() -> bytes:
    whole = converted(wav(tone(2.0, 44100), 44100), ".mp3")
    return whole[: len(whole) // 2]


# (id, file bytes, its data URI's type, request changes, what must happen: "fails: <start of
# the sentence>" or "succeeds: <a part of the audio log line>")
HOSTILE_SOUNDS = [
    ("empty-file", lambda: b"", "audio/mpeg", {}, "fails: audio is an empty file (0 bytes)"),
    ("text-named-mp3", lambda: b"not a sound\n", "audio/mpeg", {},
     "fails: audio is a 12-byte file that ffmpeg cannot read as sound"),
    ("truncated-mp3", truncated_mp3, "audio/mpeg", {}, "succeeds: audio: 0.99 s, 20 frames"),
    ("video-without-sound", lambda: video(1.0, with_sound=False), "video/mp4", {},
     "fails: audio has no sound in it (it is a video without an audio track, or a picture)"),
    ("wav-header-claims-hours", lying_wav, "audio/wav", {}, "succeeds: audio: 1.00 s, 20 frames"),
    ("0.2-s-10-keyframes", lambda: wav(tone(0.2), SAMPLE_RATE), "audio/wav", {"num_animation_frames": 10},
     "fails: audio is 0.20 s long, 4 frames at 20 fps, fewer than the 10 keyframes: use a sound of at least 0.48 s"),
    ("0.2-s-2-keyframes", lambda: wav(tone(0.2), SAMPLE_RATE), "audio/wav", {}, "succeeds: audio: 0.20 s, 4 frames"),
    ("301-s", lambda: silent_mp3(301), "audio/mpeg", {}, "fails: audio is 301.0 s long, over the limit of 300 s"),
    ("96-khz-6-channels", lambda: wav(tone(1.0, 96000, channels=6), 96000), "audio/wav", {},
     "succeeds: audio: 1.00 s, 20 frames"),
    ("pure-silence", lambda: wav(np.zeros((SAMPLE_RATE, 2)), SAMPLE_RATE), "audio/wav", {},
     "succeeds: audio: 1.00 s, 20 frames"),
    ("random-bytes", lambda: np.random.default_rng(0).bytes(5000), "audio/mpeg", {},
     "fails: audio is a 5,000-byte file that ffmpeg cannot read as sound"),
]


@pytest.mark.parametrize("make, mime, changes, outcome", [case[1:] for case in HOSTILE_SOUNDS],
                         ids=[case[0] for case in HOSTILE_SOUNDS])
def test_a_hostile_sound_fails_in_one_sentence_before_any_model_runs_or_succeeds(server, make, mime, changes, outcome):
    expected, detail = outcome.split(": ", 1)
    status, _, text = send(server, with_input(**{**SOUND_REQUEST, "audio": data_uri(make(), mime), **changes}))
    reply = json.loads(text)
    if expected == "fails":
        assert failed_sentence(status, text).startswith(detail)
        assert MODEL_RAN not in reply["logs"]
    else:
        succeeded_outputs(status, reply)
        assert f"] {detail}" in reply["logs"]
    assert server.wait_for_health("READY", timeout_s=60) == "READY"


@pytest.mark.parametrize(
    "uri",
    ["data:audio/mpeg;base64,@@@ not base64 @@@", "data:audio/mpeg;base64,", "data:;base64,AAAA", "data:audio/wav,plain text"],
    ids=["not-base64", "nothing", "no-type-4-zero-bytes", "not-base64-encoded"],
)
def test_a_data_uri_with_garbage_ends_in_one_sentence(server, uri):
    status, _, text = send(server, with_input(**{**SOUND_REQUEST, "audio": uri}))
    reply = json.loads(text)
    assert status == 200 and reply["status"] == "failed", text[:2000]
    assert "\n" not in reply["error"] and len(reply["error"]) < 400, reply["error"]
    assert COGLET_PREFIX.match(reply["error"]) or reply["error"].startswith("Input validation error"), reply["error"]
    assert MODEL_RAN not in reply.get("logs", "")
    assert server.wait_for_health("READY") == "READY"


@pytest.mark.parametrize("value", ["/etc/hostname", "file:///etc/hostname", ""], ids=["path", "file-url", "empty"])
def test_a_path_on_the_server_is_never_read_as_audio(server, value):
    status, _, text = send(server, with_input(**{**SOUND_REQUEST, "audio": value}))
    assert failed_sentence(status, text) == (
        "audio must be an http or https URL or a data URI of a sound file: the model reads only the file the server downloads."
    )
    assert server.wait_for_health("READY") == "READY"
