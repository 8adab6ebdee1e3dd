"""The inputs the real server publishes and validates equal the hosted model's contract.

The contract is the OpenAPI page of the hosted model (seed 000, copied into
tests/server/seeds/). The served /openapi.json must match it property by property: type,
default, minimum, maximum, enum, description, required, and the public order. The only
differences allowed are the documented ones in ALLOWED_ADDITIONS, and the optional inputs
of EXTRA_INPUTS that this package adds after the 15 (docs/behaviour.md, "Inputs and
validation"): a request that leaves them out is a request of the hosted model.
"""

import json
import re
from pathlib import Path

import pytest

from tests.server.live_server import shared_server, stop_shared_server

CONTRACT_PAGE = Path(__file__).parent / "server" / "seeds" / "000_d67909b06802f53f.txt"

# The inputs in their public order (the hosted model's API page).
INPUT_ORDER = [
    "prompt_start", "prompt_end", "width", "height", "num_inference_steps", "prompt_strength",
    "num_animation_frames", "num_interpolation_steps", "guidance_scale", "gif_frames_per_second",
    "gif_ping_pong", "film_interpolation", "intermediate_output", "seed", "output_format",
]

ALLOWED_ADDITIONS = {
    # Values outside [0, 1] are refused (the hosted schema has no bounds; docs/behaviour.md).
    "prompt_strength": {"minimum": 0, "maximum": 1},
    # Seeds are what torch.Generator.manual_seed takes, -2^63..2^64-1 (docs/behaviour.md),
    # the maximum as cog build deploys it: through float64, 2^64 (predict() refuses that
    # one). The seed is optional with no default value; cog 0.23 writes such an input
    # (`Optional[int] = Input(default=None)`) as nullable with a null default, where the
    # hosted model's older cog left both out.
    "seed": {"minimum": -(2**63), "maximum": 2**64, "nullable": True, "default": None},
}

# The inputs beyond the contract, in their order after it, with the schema each must have
# (besides a description). None is required; each default leaves the output unchanged.
EXTRA_INPUTS = {
    "negative_prompt": {"type": "string", "default": ""},
    # A file: a URL or data URI in the request, which the server fetches into a file.
    "init_image": {"type": "string", "format": "uri", "default": None, "nullable": True},
    "scheduler": {
        "type": "string",
        "default": "default",
        "enum": ["default", "DDIM", "DPMSolverMultistep", "K_EULER", "K_EULER_ANCESTRAL", "KLMS", "PNDM"],
    },
    "disable_safety_checker": {"type": "boolean", "default": False},
    # A file, like init_image: a sound track the server fetches.
    "audio": {"type": "string", "format": "uri", "default": None, "nullable": True},
    "audio_pace_strength": {"type": "number", "default": 0.5, "minimum": 0, "maximum": 1},
    "loop": {"type": "boolean", "default": False},
    "pacing": {"type": "string", "default": "linear", "enum": ["linear", "even"]},
    "upscale": {"type": "string", "default": "none", "enum": ["none", "2x", "4x"]},
}

# Keys that only describe presentation or how the schema is assembled.
LAYOUT_KEYS = {"title", "x-order", "allOf"}


def contract_input_schema() -> dict:
    """The `input` object schema in the JSON block after "> Body parameter" on the page."""
    page = CONTRACT_PAGE.read_text()
    block = re.search(r"> Body parameter\s*```json\n(.*?)\n```", page, re.S)
    assert block, f"no body parameter JSON block in {CONTRACT_PAGE}"
    return json.loads(block.group(1))["properties"]["input"]


def resolved_property(prop: dict, schemas: dict) -> dict:
    """A served input property with its allOf/$ref enum schema merged in, layout keys dropped."""
    merged = {}
    for part in prop.get("allOf", []):
        name = part["$ref"].removeprefix("#/components/schemas/")
        merged.update({k: v for k, v in schemas[name].items() if k not in ("title", "description")})
    merged.update({k: v for k, v in prop.items() if k not in LAYOUT_KEYS})
    return merged


@pytest.fixture(scope="session")
def served_openapi(tmp_path_factory) -> dict:
    live = shared_server(tmp_path_factory.mktemp("cog-server"))
    yield live.openapi()
    stop_shared_server()


@pytest.fixture(scope="module")
def served_input(served_openapi) -> dict:
    return served_openapi["components"]["schemas"]["Input"]


def test_contract_page_has_the_fifteen_inputs():
    assert sorted(contract_input_schema()["properties"]) == sorted(INPUT_ORDER)


def test_served_inputs_are_the_contract_inputs_in_public_order_then_the_extra_ones(served_input):
    """x-order carries the order (the server sorts JSON object keys when it serves them)."""
    properties = served_input["properties"]
    expected_order = INPUT_ORDER + list(EXTRA_INPUTS)
    assert sorted(properties, key=lambda name: properties[name]["x-order"]) == expected_order
    assert sorted(prop["x-order"] for prop in properties.values()) == list(range(len(expected_order)))


def test_required_inputs_match(served_input):
    assert sorted(served_input["required"]) == sorted(contract_input_schema()["required"])


@pytest.mark.parametrize("name", INPUT_ORDER)
def test_input_matches_contract(name, served_openapi, served_input):
    schemas = served_openapi["components"]["schemas"]
    served = resolved_property(served_input["properties"][name], schemas)
    expected = {**contract_input_schema()["properties"][name], **ALLOWED_ADDITIONS.get(name, {})}
    for key in ("type", "default", "minimum", "maximum", "enum", "description", "nullable"):
        assert served.get(key, "<absent>") == expected.get(key, "<absent>"), f"{name}.{key}"
    assert set(served) == set(expected), f"{name}: unexpected keys"


@pytest.mark.parametrize("name", EXTRA_INPUTS)
def test_extra_input_is_optional_with_its_type_and_default(name, served_openapi, served_input):
    schemas = served_openapi["components"]["schemas"]
    served = resolved_property(served_input["properties"][name], schemas)
    description = served.pop("description")
    assert served == EXTRA_INPUTS[name]
    assert name not in served_input["required"]
    # One sentence, for a person reading the model's page.
    assert description and "\n" not in description and ". " not in description, description


def test_output_is_an_iterator_of_files(served_openapi):
    output = served_openapi["components"]["schemas"]["Output"]
    assert output["type"] == "array"
    assert output["items"] == {"type": "string", "format": "uri"}
    assert output["x-cog-array-type"] == "iterator"


def test_served_document_is_the_generated_file(served_openapi):
    """The server publishes exactly what script/schema wrote (nothing else validates)."""
    generated = json.loads((Path(__file__).parent.parent / ".cog" / "openapi_schema.json").read_text())
    assert served_openapi == generated
