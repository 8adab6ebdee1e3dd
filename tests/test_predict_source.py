"""predict.py read the way `cog build` reads it: from its text, without importing it.

`cog build` (and so `cog push`) writes the deployed OpenAPI schema from predict.py's source
and understands only literals in `Input(...)`: a bound given as a name or as arithmetic
disappears from the deployed schema without a word, and a description written as adjacent
string pieces keeps the raw source between the pieces (quotes, newline, indentation). The
served-schema test (tests/test_schema.py) cannot see this, because cog's Python
introspection imports the module and evaluates everything. So here every `Input(...)`
keyword must be exactly one literal token (or a list of them, for `choices`), and what
those literals say must be the public contract and the project's own defaults.
"""

import ast
import io
import tokenize

import pytest

from animate.diffusion.schedulers import SCHEDULER_NAMES
from animate.inputs.settings import INPUT_DEFAULTS, MAX_SEED
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


def literal_values(node: ast.expr) -> list[ast.Constant] | None:
    """The literal constants `node` is made of: [node] for a str, number, bool or None, the
    elements for a list or tuple of such; None when it is anything else (a name, arithmetic,
    a call, an f-string, a negative number written with a unary minus)."""
    if isinstance(node, ast.Constant):
        return [node]
    if isinstance(node, (ast.List, ast.Tuple)) and all(isinstance(item, ast.Constant) for item in node.elts):
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
            strings = sum(isinstance(constant.value, str) for constant in constants)
            if string_token_count(ast.get_source_segment(source, keyword.value)) != strings:
                problems.append(f"{place} is written as adjacent string pieces: make it one string")
    return problems


def static_inputs(source: str) -> dict[str, dict]:
    """{input name: {schema key: value}}, from the literals of each `Input(...)`."""
    return {
        name: {SCHEMA_KEYS[k.arg]: ast.literal_eval(k.value) for k in call.keywords if k.arg in SCHEMA_KEYS}
        for name, call in input_calls(source)
    }


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
        '    seed: Optional[int] = Input(description="Seed", default=None, ge=0, le=4294967295),\n'
        "):\n"
        "    pass\n"
    )
    assert keyword_problems(source) == []
    assert static_inputs(source)["seed"] == {"description": "Seed", "default": None, "minimum": 0, "maximum": 4294967295}


def test_cog_build_reads_the_contract_from_predict_py():
    """Name, order, description, default, bounds and choices of the 15 public inputs, as
    the deployed schema will have them."""
    inputs = static_inputs(PREDICT_PY.read_text())
    assert list(inputs)[: len(INPUT_ORDER)] == INPUT_ORDER
    contract = contract_input_schema()["properties"]
    for name in INPUT_ORDER:
        expected = {**contract[name], **ALLOWED_ADDITIONS.get(name, {})}
        expected = {key: value for key, value in expected.items() if key in SCHEMA_KEYS.values()}
        assert inputs[name] == expected, name


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


def test_predict_py_literals_are_the_project_defaults():
    """predict.py's literal defaults (what is deployed) and animate.inputs.settings (what the rest of
    the project uses) are one set of values; the seed's bound is the settings' MAX_SEED."""
    inputs = static_inputs(PREDICT_PY.read_text())
    declared = {name: fields["default"] for name, fields in inputs.items() if "default" in fields}
    assert declared == INPUT_DEFAULTS
    assert inputs["seed"]["maximum"] == MAX_SEED
