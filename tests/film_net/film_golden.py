"""The golden outputs of the official model and the formula weights they were computed
with (tests/fixtures/film-golden/README.md), for the film_net tests."""

from pathlib import Path

import numpy as np
import torch

import film_net

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "film-golden"


def official_variables() -> list[tuple[str, tuple[int, ...]]]:
    """(name, TensorFlow shape) of the official variables, in the formula's order."""
    rows = []
    for line in (GOLDEN_DIR / "variables.tsv").read_text().splitlines():
        name, shape = line.split("\t")
        rows.append((name, tuple(int(n) for n in shape.strip("()").split(",") if n.strip())))
    return rows


def formula_weights(phase: float, flowscale: float, outscale: float) -> dict[str, np.ndarray]:
    """The official variables set by the README's formula: float64 sines, cast to float32."""
    arrays = {}
    for k, (name, shape) in enumerate(official_variables()):
        n = int(np.prod(shape))
        amp = 2 / np.sqrt(np.prod(shape[:-1])) if name.endswith("kernel:0") else 0.01
        values = amp * np.sin(0.7 * np.arange(n, dtype=np.float64) + 1.3 * k + phase)
        if name.startswith("predict_flow/") and "/conv_4/" in name:
            values = values * flowscale
        if name.startswith("fusion/conv2d_12/"):
            values = values * outscale
        arrays[name] = values.reshape(shape).astype(np.float32)
    return arrays


class Golden:
    """One golden file: its inputs and outputs as NCHW tensors, and its formula weights."""

    def __init__(self, filename: str):
        data = np.load(GOLDEN_DIR / filename)
        self.arrays = {key: data[key] for key in data.files}
        self.weights = formula_weights(float(data["phase"]), float(data["flowscale"]), float(data["outscale"]))

    def nchw(self, key: str) -> torch.Tensor:
        """An NHWC array of the file as an NCHW float32 tensor."""
        return torch.from_numpy(self.arrays[key]).permute(0, 3, 1, 2).contiguous()

    def model(self) -> film_net.FilmNet:
        """A FilmNet with this file's formula weights, converted by state_dict_from_tf."""
        model = film_net.FilmNet()
        model.load_state_dict(film_net.state_dict_from_tf(self.weights))
        return model.eval()


def max_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Largest absolute difference between two tensors of the same shape."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    return (actual.double() - expected.double()).abs().max().item()
