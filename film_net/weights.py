"""film_net weights: the official TensorFlow variable names, and safetensors files.

The official variables map to FilmNet parameters one to one (n, i, j are indices; L is
fusion_pyramid_levels):

    official (TensorFlow, kernels HWIO)                   FilmNet (PyTorch, weights OIHW)
    feat_net/sub_extractor/cfeat_conv_{n}/kernel:0        feat_net.sub_extractor.convs.{n}.weight
    predict_flow/flow_predictor_{i}/conv_{n}/kernel:0     predict_flow.flow_predictors.{i}.convs.{n}.weight
    predict_flow/flow_predictor_shared/conv_{n}/kernel:0  predict_flow.flow_predictor_shared.convs.{n}.weight
    fusion/conv2d_{3i+j}/kernel:0  (conv2d for 0)         fusion.convs.{i}.{j}.weight
    fusion/conv2d_{3(L-1)}/kernel:0                       fusion.output_conv.weight

and each .../bias:0 to the matching .bias. A weights file is a safetensors file of the
FilmNet state dict whose metadata key "film_net_options" holds the FilmOptions as JSON
(absent means the default options).
"""

import os
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from film_net.files import write_atomically
from film_net.interpolator import FilmNet
from film_net.options import FilmOptions

OPTIONS_METADATA_KEY = "film_net_options"


def _keras_fusion_conv(n: int) -> str:
    """Keras names its unnamed Conv2D layers conv2d, conv2d_1, conv2d_2, ..."""
    return "fusion/conv2d" if n == 0 else f"fusion/conv2d_{n}"


def official_names(options: FilmOptions | None = None) -> list[tuple[str, str]]:
    """(official variable name, FilmNet parameter name) for every variable, in the order of
    the official model's variable list."""
    options = options if options is not None else FilmOptions()
    convs = []  # (official layer scope, FilmNet module name)
    for n in range(2 * options.sub_levels):
        convs.append((f"feat_net/sub_extractor/cfeat_conv_{n}", f"feat_net.sub_extractor.convs.{n}"))
    for i in range(options.specialized_levels):
        for n in range(options.flow_convs[i] + 2):
            convs.append((f"predict_flow/flow_predictor_{i}/conv_{n}", f"predict_flow.flow_predictors.{i}.convs.{n}"))
    for n in range(options.flow_convs[-1] + 2):
        convs.append((f"predict_flow/flow_predictor_shared/conv_{n}", f"predict_flow.flow_predictor_shared.convs.{n}"))
    for i in range(options.fusion_pyramid_levels - 1):
        for j in range(3):
            convs.append((_keras_fusion_conv(3 * i + j), f"fusion.convs.{i}.{j}"))
    convs.append((_keras_fusion_conv(3 * (options.fusion_pyramid_levels - 1)), "fusion.output_conv"))

    names = []
    for scope, module in convs:
        names.append((f"{scope}/kernel:0", f"{module}.weight"))
        names.append((f"{scope}/bias:0", f"{module}.bias"))
    return names


def _shape_plan(options: FilmOptions) -> dict[str, torch.Size]:
    """FilmNet parameter name -> shape, from a model on the meta device (no memory, no init)."""
    with torch.device("meta"):
        model = FilmNet(options)
    return {name: tensor.shape for name, tensor in model.state_dict().items()}


def official_shapes(options: FilmOptions | None = None) -> dict[str, tuple[int, ...]]:
    """Official variable name -> its shape in TensorFlow layout (kernels HWIO)."""
    options = options if options is not None else FilmOptions()
    shapes = _shape_plan(options)
    result = {}
    for official, ours in official_names(options):
        shape = tuple(shapes[ours])
        result[official] = (shape[2], shape[3], shape[1], shape[0]) if len(shape) == 4 else shape
    return result


def _listing(names: list[str], limit: int = 6) -> str:
    """A short printable list of names."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def state_dict_from_tf(arrays: dict[str, np.ndarray], options: FilmOptions | None = None) -> dict[str, torch.Tensor]:
    """Official variables (name -> array in TensorFlow layout) -> a float32 FilmNet state dict.

    Every official variable must be present exactly once with its exact shape; kernels go
    from HWIO to OIHW. Raises ValueError naming what is missing, unexpected or misshapen.
    """
    options = options if options is not None else FilmOptions()
    expected = official_shapes(options)
    missing = [name for name in expected if name not in arrays]
    unexpected = [name for name in arrays if name not in expected]
    if missing or unexpected:
        raise ValueError(
            "The variables do not match film_net's official variables: "
            f"missing [{_listing(missing)}], unexpected [{_listing(unexpected)}]."
        )
    state_dict = {}
    for official, ours in official_names(options):
        array = np.asarray(arrays[official])
        if array.shape != expected[official]:
            raise ValueError(f"Variable {official} has shape {array.shape}, but film_net expects {expected[official]}.")
        tensor = torch.from_numpy(np.array(array, dtype=np.float32))
        if tensor.dim() == 4:
            tensor = tensor.permute(3, 2, 0, 1)  # HWIO -> OIHW
        state_dict[ours] = tensor.contiguous()
    return state_dict


def model_from_state_dict(state_dict: dict[str, torch.Tensor], options: FilmOptions | None = None) -> FilmNet:
    """A FilmNet holding exactly `state_dict` (no random init); ValueError if keys differ."""
    options = options if options is not None else FilmOptions()
    with torch.device("meta"):
        model = FilmNet(options)
    expected = set(model.state_dict())
    missing = sorted(expected - set(state_dict))
    unexpected = sorted(set(state_dict) - expected)
    if missing or unexpected:
        raise ValueError(
            f"The weights do not fit film_net with options {options.to_json()}: "
            f"missing [{_listing(missing)}], unexpected [{_listing(unexpected)}]."
        )
    model.load_state_dict(state_dict, assign=True)
    return model


def save(model: FilmNet, path: str | os.PathLike) -> None:
    """Writes the model's weights and options to a safetensors file, atomically (see
    write_atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    metadata = {OPTIONS_METADATA_KEY: model.options.to_json()}
    write_atomically(path, lambda partial: save_file(tensors, str(partial), metadata=metadata))


def load(path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> FilmNet:
    """A FilmNet in eval mode, without gradients, on `device` in `dtype`, from a file
    written by `save` (or by `python -m film_net.convert`)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No film_net weights at {path}; run script/download-weights or python -m animate.tiny.")
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    options_json = metadata.get(OPTIONS_METADATA_KEY)
    options = FilmOptions.from_json(options_json) if options_json else FilmOptions()
    model = model_from_state_dict(load_file(str(path)), options)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)
