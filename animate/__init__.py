"""The prompt walk (docs/behaviour.md, "The walk"): settings, keyframe plan, diffusion, frames, files."""

from animate.inputs.plan import KeyframePlan, ping_pong_order
from animate.inputs.prompts import InputError, parse_prompts
from animate.inputs.settings import Settings, settings_from_inputs
from animate.pipeline import animate
from animate.slerp import slerp
from animate.weights import Components, WeightsError, load_components

__all__ = [
    "Components",
    "InputError",
    "KeyframePlan",
    "Settings",
    "WeightsError",
    "animate",
    "load_components",
    "parse_prompts",
    "ping_pong_order",
    "settings_from_inputs",
    "slerp",
]
