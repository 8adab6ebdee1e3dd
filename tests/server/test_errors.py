"""Bad inputs: the server refuses what the schema can see (HTTP 422, one entry per bad field);
predict() fails what only it can see, with one sentence; the server stays READY throughout."""

import pytest

GOOD = {"prompt_start": "a red apple", "prompt_end": "a green pear", "width": 128, "height": 128, "num_inference_steps": 1}

# coglet 0.23 wraps an exception raised in predict() as
# "Prediction failed: Generator iteration error: <ExceptionType>: <message>".
COGLET_PREFIX = "Prediction failed: Generator iteration error: InputError: "


def refused_fields(reply: dict) -> list[str]:
    """The input names of a 422 reply's detail entries, which are pydantic-style."""
    fields = []
    for entry in reply["detail"]:
        assert entry["loc"][:2] == ["body", "input"], entry
        assert entry["msg"] and entry["type"], entry
        fields.append(entry["loc"][2])
    return fields


@pytest.mark.parametrize(
    "bad",
    [
        {"width": 300},
        {"height": 1024},
        {"num_inference_steps": 0},
        {"prompt_strength": 1.5},
        {"prompt_strength": -0.1},
        {"output_format": "webm"},
        {"guidance_scale": 25},
        {"num_animation_frames": 1},
        {"seed": 2**65},  # beyond what torch takes, -2**63 to 2**64 - 1, by more than float64 rounds
        {"width": "wide"},
    ],
    ids=lambda bad: "-".join(f"{k}={v}" for k, v in bad.items()),
)
def test_out_of_contract_input_is_refused_before_predict(server, bad):
    status, reply = server.predict({**GOOD, **bad})
    assert status == 422, reply
    # A value of the wrong type for a field with choices gets two entries (type and enum).
    assert set(refused_fields(reply)) == set(bad)
    assert server.health() == "READY"


def test_missing_prompt_is_refused(server):
    status, reply = server.predict({"prompt_end": "a green pear"})
    assert status == 422, reply
    assert reply["detail"] == [
        {"loc": ["body", "input", "prompt_start"], "msg": "Field required", "type": "value_error.missing"}
    ]


def test_each_bad_field_gets_its_own_entry(server):
    bad = {"prompt_end": "b", "width": 300, "num_inference_steps": 0, "prompt_strength": 1.5, "output_format": "webm"}
    status, reply = server.predict(bad)
    assert status == 422, reply
    assert sorted(refused_fields(reply)) == sorted(["prompt_start", "width", "num_inference_steps", "prompt_strength", "output_format"])
    assert server.health() == "READY"


@pytest.mark.parametrize(
    "bad, names",
    [
        ({"prompt_end": "a||b"}, "prompt_end"),
        ({"prompt_end": "a green pear|"}, "prompt_end"),
        ({"prompt_end": "  "}, "prompt_end"),
        ({"prompt_start": ""}, "prompt_start"),
        ({"prompt_start": "   "}, "prompt_start"),
    ],
    ids=["empty-piece", "trailing-pipe", "blank-end", "empty-start", "blank-start"],
)
def test_empty_prompt_fails_the_prediction_with_one_sentence(server, bad, names):
    status, reply = server.predict({**GOOD, **bad})
    assert status == 200, reply
    assert reply["status"] == "failed"
    error = reply["error"]
    assert error.startswith(COGLET_PREFIX), error
    sentence = error.removeprefix(COGLET_PREFIX)
    assert sentence.startswith(names) and sentence.endswith(".")
    assert "\n" not in sentence and "Traceback" not in sentence
    assert server.wait_for_health("READY") == "READY"


def test_unknown_inputs_are_ignored(server):
    """coglet drops input fields its schema does not know, and runs the prediction."""
    status, reply = server.predict({**GOOD, "num_animation_frames": 2, "num_interpolation_steps": 1, "negative_prompts": "x"})
    assert status == 200 and reply["status"] == "succeeded", reply.get("error")
