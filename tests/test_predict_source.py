"""predict.py read the way `cog build` reads it: from its text, without importing it.

`cog build` (and so `cog push`) writes the deployed OpenAPI schema from predict.py's source
and understands only literals in `Input(...)`: a bound given as a name or as arithmetic
disappears from the deployed schema without a word, and a description written as adjacent
string pieces keeps the raw source between the pieces (quotes, newline, indentation). The
served-schema test (tests/test_schema.py) cannot see this, because cog's Python
introspection imports the module and evaluates everything. So here every `Input(...)`
keyword must be exactly one literal token (or a list of them, for `choices`), and what
those literals say must be the public contract and the project's own defaults.

`cog build` reads a bound (`ge`, `le`) as a float64 (Go's strconv.ParseFloat of its text,
a leading minus included), so a bound that float64 cannot hold exactly is deployed as the
nearest float64: `deployed_bound` does the same here.
"""

import ast
import io
import tokenize

import pytest
import torch

from animate.diffusion.schedulers import SCHEDULER_NAMES
from animate.inputs.settings import INPUT_DEFAULTS, MAX_SEED, MIN_SEED, UPSCALE_FACTORS
from animate.pipeline import PACINGS
from tests.conftest import REPO_ROOT
from tests.test_schema import (
    ALLOWED_ADDITIONS,
    EXTRA_INPUTS,
    INPUT_ORDER,
    contract_input_schema,
)

PREDICT_PY = REPO_ROOT / "predict.py"

# Input keyword -> the OpenAPI key it becomes in the schema.
SCHEMA_KEYS = {"description": "description", "default": "default", "ge": "minimum", "le": "maximum", "choices": "enum"}


def input_calls(source: str) -> list[tuple[str, ast.Call]]:
    """(parameter name, its `Input(...)` call) for each parameter of predict() that has one."""
    tree = ast.parse(source)
    predict = next(
        node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name == "predict"
    )
    arguments = predict.args.args[len(predict.args.args) - len(predict.args.defaults) :]
    return [
        (argument.arg, default)
        for argument, default in zip(arguments, predict.args.defaults)
        if isinstance(default, ast.Call) and getattr(default.func, "id", getattr(default.func, "attr", None)) == "Input"
    ]


def is_literal(node: ast.expr) -> bool:
    """A str, number, bool or None constant, or a number with a leading minus (which cog
    build reads as one number too)."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return isinstance(node.operand, ast.Constant) and type(node.operand.value) in (int, float)
    return isinstance(node, ast.Constant)


def literal_values(node: ast.expr) -> list[ast.expr] | None:
    """The literals `node` is made of: [node] for one literal (is_literal), the elements
    for a list or tuple of them; None when it is anything else (a name, arithmetic, a
    call, an f-string)."""
    if is_literal(node):
        return [node]
    if isinstance(node, (ast.List, ast.Tuple)) and all(is_literal(item) for item in node.elts):
        return list(node.elts)
    return None


def string_token_count(source_segment: str) -> int:
    """How many string tokens the source text has: 2 for `"abc " "def"`, which Python joins."""
    tokens = tokenize.generate_tokens(io.StringIO(f"({source_segment})").readline)
    return sum(1 for token in tokens if token.type == tokenize.STRING)


def keyword_problems(source: str) -> list[str]:
    """One line per `Input(...)` keyword of predict() that is not one literal, naming it."""
    problems = []
    for name, call in input_calls(source):
        for keyword in call.keywords:
            place = f"predict.py line {keyword.value.lineno}: {name}: {keyword.arg}="
            constants = literal_values(keyword.value)
            if constants is None:
                problems.append(f"{place}{ast.get_source_segment(source, keyword.value)!r} is not a literal")
                continue
            strings = sum(isinstance(getattr(constant, "value", None), str) for constant in constants)
            if string_token_count(ast.get_source_segment(source, keyword.value)) != strings:
                problems.append(f"{place} is written as adjacent string pieces: make it one string")
    return problems


def static_inputs(source: str) -> dict[str, dict]:
    """{input name: {schema key: value}}, from the literals of each `Input(...)`, exactly
    as written (deployed_bound says what cog build makes of the bounds)."""
    return {
        name: {SCHEMA_KEYS[k.arg]: ast.literal_eval(k.value) for k in call.keywords if k.arg in SCHEMA_KEYS}
        for name, call in input_calls(source)
    }


def deployed_bound(literal: int | float) -> float:
    """A bound as the deployed schema holds it: the float64 nearest the literal."""
    return float(literal)


def test_every_input_keyword_is_one_literal():
    assert keyword_problems(PREDICT_PY.read_text()) == []


# What cog build would misread, each inside a predict() like predict.py's.
MISREAD = {
    "a name as a bound": ("le=MAX_SEED", "'MAX_SEED' is not a literal"),
    "arithmetic as a bound": ("le=2**32 - 1", "'2**32 - 1' is not a literal"),
    "adjacent string pieces": ('description="Random seed. "\n            "Leave blank"', "adjacent string pieces"),
    "a call": ("default=int('3')", "is not a literal"),
    "a name among choices": ("choices=[128, WIDE]", "is not a literal"),
    "an f-string": ('description=f"up to {LIMIT}"', "is not a literal"),
}


@pytest.mark.parametrize("keyword, complaint", MISREAD.values(), ids=MISREAD.keys())
def test_the_check_refuses_what_cog_build_misreads_and_names_the_line(keyword, complaint):
    source = (
        "class Predictor:\n"
        "    def predict(\n"
        "        self,\n"
        '        steps: int = Input(description="Steps", ge=1, le=500, default=50),\n'
        f"        seed: int = Input({keyword}),\n"
        "    ):\n"
        "        pass\n"
    )
    [problem] = keyword_problems(source)
    assert problem.startswith("predict.py line 5: seed: ")
    assert complaint in problem


def test_the_check_accepts_one_literal_per_keyword():
    source = (
        "def predict(\n"
        '    width: int = Input(description="Width of output image", choices=[128, 256], default=128),\n'
        '    scale: float = Input(description="Scale", ge=1, le=20.5, default=7.5),\n'
        '    flag: bool = Input(description="A flag", default=False),\n'
        '    seed: Optional[int] = Input(description="Seed", default=None, ge=-5, le=4294967295),\n'
        "):\n"
        "    pass\n"
    )
    assert keyword_problems(source) == []
    assert static_inputs(source)["seed"] == {"description": "Seed", "default": None, "minimum": -5, "maximum": 4294967295}


def test_cog_build_reads_the_contract_from_predict_py():
    """Name, order, description, default, bounds and choices of the 15 public inputs, as
    the deployed schema will have them."""
    inputs = static_inputs(PREDICT_PY.read_text())
    assert list(inputs)[: len(INPUT_ORDER)] == INPUT_ORDER
    contract = contract_input_schema()["properties"]
    for name in INPUT_ORDER:
        expected = {**contract[name], **ALLOWED_ADDITIONS.get(name, {})}
        expected = {key: value for key, value in expected.items() if key in SCHEMA_KEYS.values()}
        deployed = {
            key: deployed_bound(value) if key in ("minimum", "maximum") else value for key, value in inputs[name].items()
        }
        assert deployed == expected, name


def test_cog_build_reads_the_extra_inputs_after_the_contract():
    """This package's own inputs come after the 15, in their order, with their defaults and
    choices, as the deployed schema will have them."""
    inputs = static_inputs(PREDICT_PY.read_text())
    assert list(inputs) == INPUT_ORDER + list(EXTRA_INPUTS)
    for name, expected in EXTRA_INPUTS.items():
        expected = {key: value for key, value in expected.items() if key in SCHEMA_KEYS.values()}
        assert {key: value for key, value in inputs[name].items() if key != "description"} == expected, name


def test_scheduler_choices_are_the_samplers_the_walk_knows():
    assert static_inputs(PREDICT_PY.read_text())["scheduler"]["enum"] == list(SCHEDULER_NAMES)


def test_pacing_choices_are_the_pacings_the_walk_knows():
    assert static_inputs(PREDICT_PY.read_text())["pacing"]["enum"] == list(PACINGS)


def test_upscale_choices_are_the_factors_the_walk_knows():
    assert static_inputs(PREDICT_PY.read_text())["upscale"]["enum"] == list(UPSCALE_FACTORS)


def test_predict_py_literals_are_the_project_defaults():
    """predict.py's literal defaults (what is deployed) and animate.inputs.settings (what the rest of
    the project uses) are one set of values; the seed's bound is the settings' MAX_SEED."""
    inputs = static_inputs(PREDICT_PY.read_text())
    declared = {name: fields["default"] for name, fields in inputs.items() if "default" in fields}
    assert declared == INPUT_DEFAULTS
    assert (inputs["seed"]["minimum"], inputs["seed"]["maximum"]) == (MIN_SEED, MAX_SEED)


def test_the_deployed_schema_refuses_no_seed_the_hosted_model_took():
    """The hosted model's schema had no bounds and gave the seed to torch.Generator.manual_seed,
    which takes -2**63..2**64-1. The deployed bounds may only be wider (float64 rounds the
    maximum up to 2**64, which predict() refuses itself), never narrower."""
    seed = static_inputs(PREDICT_PY.read_text())["seed"]
    assert deployed_bound(seed["minimum"]) <= -(2**63) and deployed_bound(seed["maximum"]) >= 2**64 - 1
    for edge in (-(2**63), 2**64 - 1):
        torch.Generator("cpu").manual_seed(edge)
    for beyond in (-(2**63) - 1, 2**64):
        with pytest.raises((RuntimeError, ValueError)):
            torch.Generator("cpu").manual_seed(beyond)


def test_every_other_bound_is_deployed_exactly():
    """Only the seed's maximum is beyond what float64 holds exactly; any other bound that
    were would move in the deployed schema without a word."""
    inputs = static_inputs(PREDICT_PY.read_text())
    moved = [
        (name, key, value)
        for name, fields in inputs.items()
        for key, value in fields.items()
        if key in ("minimum", "maximum") and deployed_bound(value) != value
    ]
    assert moved == [("seed", "maximum", MAX_SEED)]
