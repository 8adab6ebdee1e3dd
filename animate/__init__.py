"""The prompt walk (docs/behaviour.md, "The walk"): settings, keyframe plan, diffusion, frames, files."""

from animate.plan import KeyframePlan, ping_pong_order
from animate.prompts import InputError, parse_prompts
from animate.settings import Settings, settings_from_inputs
from animate.slerp import slerp
from animate.weights import Components, WeightsError, load_components
from animate.pipeline import animate

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
