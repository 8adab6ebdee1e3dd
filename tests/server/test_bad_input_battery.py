"""A battery of malformed and hostile requests against the real server.

Each request gets the answer a user can act on: HTTP 422 naming every bad field (what the
schema can see), HTTP 400/415 for a body that is not a JSON request, a failed prediction
whose error is one sentence naming the input and what to do (what only predict() can
see), or, for inputs that are odd but valid, a prediction that succeeds. After each one
the server is READY again and a valid request succeeds.

What coglet 0.23.1 does, as these tests pin it down:
- a null is refused for every input, the optional seed included ("null is not of type
  "integer""): it validates with JSON Schema, where the schema's `nullable` means nothing;
- input keys the schema does not know, and unknown top-level keys, are dropped and the
  prediction runs (as the hosted API does), however large they are;
- a body that is not JSON is 400 with a plain-text reason; valid JSON of the wrong shape
  (a list) is 422, also plain text; another content type is 415;
- a float with an integral value (2.0) counts as an integer, as in JSON Schema;
- an integer beyond 64 bits (below -2^63, above 2^64 - 1) is read as the nearest float64,
  both by the schema check and for predict(): -2^63 - 1 reaches predict() as the float
  -2^63, 2^64 + 1 as 2^64.
"""

import json
import re
import time
import urllib.error
import urllib.request

import pytest

from tests.server.live_server import BUSY_RETRY_S, succeeded_outputs

# Small enough that a prediction takes a fraction of a second with tiny weights.
GOOD = {
    "prompt_start": "a red apple", "prompt_end": "a green pear", "width": 128, "height": 128,
    "num_inference_steps": 2, "num_animation_frames": 2, "num_interpolation_steps": 2,
}
# The cheapest valid request: one step, two keyframes, no in-betweens.
PROBE = {**GOOD, "num_inference_steps": 1, "num_interpolation_steps": 1, "seed": 1}

# coglet wraps an exception from predict() as "Prediction failed: Generator iteration
# error: <ExceptionType>: <message>"; the message is ours.
COGLET_PREFIX = re.compile(r"^Prediction failed: Generator iteration error: \w+: ")


def send(server, body: bytes, content_type: str = "application/json") -> tuple[int, str, str]:
    """POST raw bytes to /predictions; (status, content type, body text). A 409 (the server
    still busy for a moment after the previous answer) is retried, as LiveServer.predict does."""
    deadline = time.monotonic() + BUSY_RETRY_S
    while True:
        status, content_type_back, text = post_once(server, body, content_type)
        if status != 409 or time.monotonic() > deadline:
            return status, content_type_back, text
        time.sleep(0.05)


def post_once(server, body: bytes, content_type: str) -> tuple[int, str, str]:
    """One POST of raw bytes to /predictions; (status, content type, body text)."""
    request = urllib.request.Request(
        f"{server.base_url}/predictions", data=body, headers={"Content-Type": content_type}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read().decode()


def with_input(**changes) -> bytes:
    """GOOD with changes; a change to None sets the input to JSON null."""
    return json.dumps({"input": {**GOOD, **changes}}).encode()


def without(*names) -> bytes:
    return json.dumps({"input": {k: v for k, v in GOOD.items() if k not in names}}).encode()


def assert_still_serving(server):
    """READY again, and the next valid request succeeds."""
    assert server.wait_for_health("READY", timeout_s=60) == "READY"
    outputs = succeeded_outputs(*server.predict(PROBE))
    assert [mime for mime, _ in outputs] == ["image/gif"]
    assert server.wait_for_health("READY", timeout_s=60) == "READY"


def assert_refused(status: int, content_type: str, text: str, fields: set[str]):
    """HTTP 422 whose detail entries name exactly `fields`, each with a message."""
    assert status == 422, text[:2000]
    assert content_type.startswith("application/json"), content_type
    detail = json.loads(text)["detail"]
    named = set()
    for entry in detail:
        assert entry["loc"][:2] == ["body", "input"] and len(entry["loc"]) == 3, entry
        assert entry["msg"].strip() and "\n" not in entry["msg"], entry
        named.add(entry["loc"][2])
    assert named == fields, detail


def failed_sentence(status: int, text: str) -> str:
    """The error of a failed prediction, without coglet's prefix; checked to be one sentence."""
    assert status == 200, text[:2000]
    reply = json.loads(text)
    assert reply["status"] == "failed", f"expected a failed prediction, got {reply['status']}"
    error = reply["error"]
    assert COGLET_PREFIX.match(error), error
    sentence = COGLET_PREFIX.sub("", error)
    assert sentence and sentence.endswith("."), sentence
    assert "\n" not in sentence and "Traceback" not in sentence and ". " not in sentence, sentence
    assert len(sentence) < 400, sentence
    return sentence


# (id, body, fields the 422 must name)
WRONG_TYPES = [
    ("prompt_start-number", with_input(prompt_start=5), {"prompt_start"}),
    ("prompt_end-list", with_input(prompt_end=["a green pear", "a plum"]), {"prompt_end"}),
    ("width-string", with_input(width="wide"), {"width"}),
    ("height-fraction", with_input(height=128.5), {"height"}),
    ("steps-numeric-string", with_input(num_inference_steps="2"), {"num_inference_steps"}),
    ("strength-string", with_input(prompt_strength="high"), {"prompt_strength"}),
    ("frames-bool", with_input(num_animation_frames=True), {"num_animation_frames"}),
    ("interpolation-object", with_input(num_interpolation_steps={}), {"num_interpolation_steps"}),
    ("guidance-list", with_input(guidance_scale=[7.5]), {"guidance_scale"}),
    ("fps-fraction", with_input(gif_frames_per_second=2.5), {"gif_frames_per_second"}),
    ("ping_pong-string", with_input(gif_ping_pong="yes"), {"gif_ping_pong"}),
    ("film-number", with_input(film_interpolation=1), {"film_interpolation"}),
    ("intermediate-string", with_input(intermediate_output="false"), {"intermediate_output"}),
    ("seed-string", with_input(seed="42"), {"seed"}),
    ("format-number", with_input(output_format=1), {"output_format"}),
]

JUST_OUTSIDE = [
    ("width-129", with_input(width=129), {"width"}),
    ("height-1024", with_input(height=1024), {"height"}),
    ("steps-0", with_input(num_inference_steps=0), {"num_inference_steps"}),
    ("steps-501", with_input(num_inference_steps=501), {"num_inference_steps"}),
    ("strength-below-0", with_input(prompt_strength=-0.01), {"prompt_strength"}),
    ("strength-above-1", with_input(prompt_strength=1.01), {"prompt_strength"}),
    ("frames-1", with_input(num_animation_frames=1), {"num_animation_frames"}),
    ("frames-51", with_input(num_animation_frames=51), {"num_animation_frames"}),
    ("interpolation-0", with_input(num_interpolation_steps=0), {"num_interpolation_steps"}),
    ("interpolation-51", with_input(num_interpolation_steps=51), {"num_interpolation_steps"}),
    ("guidance-0.99", with_input(guidance_scale=0.99), {"guidance_scale"}),
    ("guidance-20.01", with_input(guidance_scale=20.01), {"guidance_scale"}),
    ("fps-0", with_input(gif_frames_per_second=0), {"gif_frames_per_second"}),
    ("fps-51", with_input(gif_frames_per_second=51), {"gif_frames_per_second"}),
    ("format-webm", with_input(output_format="webm"), {"output_format"}),
    ("format-uppercase", with_input(output_format="GIF"), {"output_format"}),
    # The next float64 beyond each bound (the schema compares in float64).
    ("seed-below-minus-2^63", with_input(seed=-(2**63) - 2048), {"seed"}),
    ("seed-above-2^64", with_input(seed=2**64 + 4096), {"seed"}),
]

NULLS = [
    (f"null-{name}", with_input(**{name: None}), {name})
    for name in [
        "prompt_start", "prompt_end", "width", "height", "num_inference_steps", "prompt_strength",
        "num_animation_frames", "num_interpolation_steps", "guidance_scale", "gif_frames_per_second",
        "gif_ping_pong", "film_interpolation", "intermediate_output", "seed", "output_format",
    ]
]

MISSING = [
    ("missing-prompt_start", without("prompt_start"), {"prompt_start"}),
    ("missing-prompt_end", without("prompt_end"), {"prompt_end"}),
    ("empty-input", json.dumps({"input": {}}).encode(), {"prompt_start", "prompt_end"}),
    ("null-input", json.dumps({"input": None}).encode(), {"prompt_start", "prompt_end"}),
    ("no-input-key", json.dumps({"id": "x"}).encode(), {"prompt_start", "prompt_end"}),
    ("every-field-wrong", json.dumps({"input": {"prompt_end": 1, "width": 300, "seed": 2**65, "output_format": "png"}}).encode(),
     {"prompt_start", "prompt_end", "width", "seed", "output_format"}),
]


@pytest.mark.parametrize("body, fields", [case[1:] for case in WRONG_TYPES + JUST_OUTSIDE + NULLS + MISSING],
                         ids=[case[0] for case in WRONG_TYPES + JUST_OUTSIDE + NULLS + MISSING])
def test_input_outside_the_schema_is_422_naming_each_field(server, body, fields):
    assert_refused(*send(server, body), fields)
    assert_still_serving(server)


@pytest.mark.parametrize(
    "body, content_type, status, says",
    [
        (b"this is not json", "application/json", 400, "Failed to parse the request body as JSON"),
        (b"", "application/json", 400, "Failed to parse the request body as JSON"),
        (b'{"input": {"prompt_start": "a", "prompt_end": "b"', "application/json", 400, "EOF while parsing"),
        (b'{"input": {"prompt_start": "a \xff\xfe", "prompt_end": "b"}}', "application/json", 400, "invalid unicode"),
        (b'{"input": {"prompt_start": "a \\ud800", "prompt_end": "b"}}', "application/json", 400, "hex escape"),
        (b'{"input": {"prompt_start": "a", "prompt_end": "b", "prompt_strength": NaN}}', "application/json", 400, "prompt_strength"),
        (b'{"input": {"prompt_start": "a", "prompt_end": "b", "seed": 1' + b"0" * 400 + b"}}", "application/json", 400,
         "number out of range"),
        (b"[1, 2]", "application/json", 422, "Failed to deserialize the JSON body"),
        (json.dumps({"input": GOOD}).encode(), "text/plain", 415, "Content-Type: application/json"),
    ],
    ids=["not-json", "empty-body", "cut-json", "invalid-utf8", "lone-surrogate", "nan-literal", "seed-1e400",
         "json-list", "text-plain"],
)
def test_body_that_is_not_a_json_request_is_refused_with_the_reason(server, body, content_type, status, says):
    got_status, _, text = send(server, body, content_type)
    assert got_status == status, text[:500]
    assert says in text and "\n" not in text.strip(), text[:500]
    assert_still_serving(server)


def test_input_that_is_not_an_object_is_422(server):
    status, _, text = send(server, json.dumps({"input": "a red apple"}).encode())
    assert status == 422
    assert json.loads(text)["detail"][0]["msg"] == '"a red apple" is not of type "object"'
    assert_still_serving(server)


@pytest.mark.parametrize(
    "changes, starts",
    [
        ({"prompt_start": "     "}, "prompt_start is empty: give it the text of the first prompt"),
        ({"prompt_start": "\x00\x01\x1b"}, "prompt_start is empty"),
        ({"prompt_end": " \t\n "}, "prompt_end is empty: give it one or more prompts separated by '|'"),
        ({"prompt_end": "\u200b\u200d"}, "prompt_end is empty"),
        ({"prompt_end": "|"}, "prompt_end has an empty prompt at position 1 of 2 ('|'): remove the extra '|'"),
        ({"prompt_end": "||||"}, "prompt_end has an empty prompt at position 1 of 5"),
        ({"prompt_end": "a||b"}, "prompt_end has an empty prompt at position 2 of 3 ('a||b')"),
        ({"prompt_end": "a plum|"}, "prompt_end has an empty prompt at position 2 of 2"),
        ({"prompt_end": "|".join(["a plum"] * 150)}, "prompt_end has 150 prompts separated by '|': use at most 99"),
        ({"prompt_start": "x" * 5_000_000}, "prompt_start is 5,000,000 characters long"),
    ],
    ids=["spaces-start", "control-start", "whitespace-end", "zero-width-end", "only-pipe", "only-pipes",
         "a||b", "trailing-pipe", "150-prompts", "5MB-prompt"],
)
def test_prompt_no_one_can_read_fails_the_prediction_in_one_sentence(server, changes, starts):
    status, _, text = send(server, with_input(**changes))
    assert failed_sentence(status, text).startswith(starts)
    assert_still_serving(server)


def succeeded(server, body: bytes) -> dict:
    status, _, text = send(server, body)
    reply = json.loads(text)
    succeeded_outputs(status, reply)
    return reply


def test_ten_thousand_character_prompt_is_truncated_with_a_short_log_line(server):
    reply = succeeded(server, with_input(prompt_start="a red apple on a table " * 435, seed=5))
    cut = [line for line in reply["logs"].splitlines() if "tokens were cut" in line]
    assert len(cut) == 1 and cut[0].startswith("Prompt 1 is ") and len(cut[0]) < 300
    assert len(reply["logs"]) < 5000, "the cut text must not be echoed into the log"
    assert_still_serving(server)


@pytest.mark.parametrize(
    "changes",
    [
        {"prompt_start": "🍎 une pomme rouge, 赤いリンゴ", "prompt_end": "🍐 ❤️‍🔥 Ωμέγα | مرحبا"},
        {"prompt_start": "a red\x00 apple\x07\x1b[31m", "prompt_end": "a green\tpear\r\n"},
        {"prompt_end": "  a green pear  |  a yellow banana  "},
    ],
    ids=["unicode-emoji", "control-characters-inside", "padded-pieces"],
)
def test_odd_but_readable_prompts_succeed(server, changes):
    reply = succeeded(server, with_input(**changes))
    assert "Walk over" in reply["logs"]
    assert_still_serving(server)


@pytest.mark.parametrize(
    "body",
    [
        with_input(negative_prompts="blurry", num_inference_step=50),
        json.dumps({"input": GOOD, "unexpected": {"nested": [1, 2, 3]}}).encode(),
        json.dumps({"input": {**GOOD, "padding": "x" * 5_000_000}}).encode(),
    ],
    ids=["unknown-input-keys", "unknown-top-level-key", "5MB-unknown-key"],
)
def test_unknown_keys_are_dropped_and_the_prediction_runs(server, body):
    assert len(succeeded(server, body)["output"]) == 1
    assert_still_serving(server)


def test_values_at_every_bound_are_accepted(server):
    lower = with_input(prompt_strength=0, guidance_scale=1, gif_frames_per_second=1, num_inference_steps=1,
                       num_interpolation_steps=1, seed=0, gif_ping_pong=True)
    upper = with_input(prompt_strength=1, guidance_scale=20, gif_frames_per_second=50, seed=2**32 - 1,
                       output_format="mp4", film_interpolation=False)
    assert "Using seed: 0" in succeeded(server, lower)["logs"].splitlines()
    assert_still_serving(server)
    assert "Using seed: 4294967295" in succeeded(server, upper)["logs"].splitlines()
    assert_still_serving(server)


@pytest.mark.parametrize("seed", [-1, 2**32, -(2**63), 2**64 - 1])
def test_every_seed_the_hosted_model_took_runs_logged_as_given_and_repeats(server, seed):
    """The hosted schema had no bounds, and torch.Generator.manual_seed takes -2^63..2^64-1."""
    first = succeeded(server, json.dumps({"input": {**PROBE, "seed": seed}}).encode())
    assert f"Using seed: {seed}" in first["logs"].splitlines()
    again = succeeded(server, json.dumps({"input": {**PROBE, "seed": seed}}).encode())
    assert again["output"] == first["output"]


@pytest.mark.parametrize("seed", [2**64, 2**64 + 1, -(2**63) - 1])
def test_seed_beyond_what_torch_takes_that_the_schema_lets_through_fails_in_one_sentence(server, seed):
    """The deployed maximum is 2^64 (cog build writes bounds through float64), and integers
    beyond 64 bits that round to a bound pass the schema check as that bound."""
    status, _, text = send(server, json.dumps({"input": {**PROBE, "seed": seed}}).encode())
    sentence = failed_sentence(status, text)
    assert re.fullmatch(r"seed \S+ is out of range: use a whole number from -9223372036854775808 to 18446744073709551615\.",
                        sentence), sentence
    assert_still_serving(server)


def test_integral_float_counts_as_an_integer(server):
    reply = succeeded(server, with_input(num_inference_steps=2.0, seed=7.0))
    assert "Using seed: 7" in reply["logs"].splitlines()
    assert_still_serving(server)
