"""The prompt walk (docs/behaviour.md, "The walk"): settings, keyframe plan, diffusion, frames, files.

The names below are imported on first use (PEP 562), not with the package: the walk needs
torch and diffusers, which take seconds to import, and `python -m animate.tiny --help`
(which imports this package first) should answer at once. None of them is also the name of
a module of the package, which importing that module would put in its place (spherical
interpolation is `animate.slerp.slerp`).
"""

import importlib

# Each public name and the module that defines it.
EXPORTS = {
    "Components": "animate.weights",
    "InputError": "animate.inputs.prompts",
    "KeyframePlan": "animate.inputs.plan",
    "Settings": "animate.inputs.settings",
    "WeightsError": "animate.weights",
    "animate": "animate.pipeline",
    "load_components": "animate.weights",
    "parse_prompts": "animate.inputs.prompts",
    "ping_pong_order": "animate.inputs.plan",
    "settings_from_inputs": "animate.inputs.settings",
}

__all__ = sorted(EXPORTS)


def __getattr__(name: str):
    """Import the module that defines `name` and keep the name here for the next lookup."""
    if name not in EXPORTS:
        raise AttributeError(f"module 'animate' has no attribute {name!r}")
    value = getattr(importlib.import_module(EXPORTS[name]), name)
    globals()[name] = value
    return value
