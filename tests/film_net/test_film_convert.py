"""python -m film_net.convert on SavedModels that hold the official variables under
object-graph keys, as the released one does."""

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from film_golden import max_error, official_variables

import film_net
from film_net.convert import ConversionError, main, read_official_variables
from tests.conftest import REPO_ROOT


def import_tensorflow():
    """TensorFlow (a test dependency, requirements-dev.txt), imported only by the tests that
    need it so that other tests do not pay for it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow

    return tensorflow


def write_saved_model(directory: Path, variables: list[tuple[str, np.ndarray]], seed: int = 0) -> None:
    """A SavedModel whose variables carry the given names (without ':0') but are attached in
    shuffled order under meaningless attribute names, in nested objects and lists, so that
    neither the checkpoint keys nor the order say which is which."""
    tf = import_tensorflow()
    variables = list(variables)
    random.Random(seed).shuffle(variables)
    root = tf.Module()
    root.blocks = [tf.Module() for _ in range(3)]
    for block in root.blocks:
        block.items = []  # tracked: tf.Module wraps the list
    for index, (name, array) in enumerate(variables):
        variable = tf.Variable(array, name=name.removesuffix(":0"))
        block = root.blocks[index % 3]
        if index % 2:
            setattr(block, f"w{index}", variable)
        else:
            block.items.append(variable)
    tf.saved_model.save(root, str(directory))


def test_conversion_command_reproduces_the_golden_outputs(tmp_path, golden_128x192):
    # Plus entries that are not film_net variables, one of them with a weight's shape.
    extras = [
        ("global_step:0", np.array(1234, np.int64)),
        ("Adam/feat_net/sub_extractor/cfeat_conv_1/kernel/m:0", np.ones((3, 3, 64, 64), np.float32)),
    ]
    write_saved_model(tmp_path / "saved_model", [*golden_128x192.weights.items(), *extras])
    keys = [key for key, _ in import_tensorflow().train.list_variables(str(tmp_path / "saved_model" / "variables" / "variables"))]
    assert not any("cfeat_conv" in key for key in keys)  # the names are not in the keys

    output = tmp_path / "weights" / "film_net_style.safetensors"
    result = subprocess.run(
        [sys.executable, "-m", "film_net.convert", str(tmp_path / "saved_model"), str(output)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Read 82 film_net variables" in result.stdout and "skipped 2 other entries" in result.stdout

    model = film_net.load(output, "cpu", torch.float32)
    assert model.options == film_net.FilmOptions()
    with torch.inference_mode():
        image = model(golden_128x192.nchw("x0"), golden_128x192.nchw("x1"))
    error = max_error(image, golden_128x192.nchw("image"))
    print(f"max abs error after conversion, 128x192: image {error:.2e}")
    assert error < 1e-3


def test_missing_and_repeated_variables_are_named(tmp_path):
    rows = official_variables()
    variables = [(name, np.zeros(shape, np.float32)) for name, shape in rows[1:]]  # no cfeat_conv_0/kernel
    variables.append(("fusion/conv2d_12/bias:0", np.zeros(3, np.float32)))  # a second one of that name
    write_saved_model(tmp_path / "saved_model", variables)
    with pytest.raises(ConversionError) as error:
        read_official_variables(tmp_path / "saved_model")
    message = str(error.value)
    assert "missing [feat_net/sub_extractor/cfeat_conv_0/kernel:0]" in message
    assert "more than once [fusion/conv2d_12/bias:0]" in message


def test_a_folder_that_is_not_a_saved_model_is_refused(tmp_path, capsys):
    assert main([str(tmp_path), str(tmp_path / "out.safetensors")]) == 1
    assert "is not a complete SavedModel folder" in capsys.readouterr().err
    assert not (tmp_path / "out.safetensors").exists()
