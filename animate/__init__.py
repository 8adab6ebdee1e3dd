"""The prompt walk of SPEC.md section 2: settings, keyframe plan, diffusion, frames, files."""

from animate.plan import KeyframePlan, ping_pong_order
from animate.prompts import InputError, parse_prompts
from animate.settings import Settings, settings_from_inputs
from animate.slerp import slerp

__all__ = [
    "InputError",
    "KeyframePlan",
    "Settings",
    "parse_prompts",
    "ping_pong_order",
    "settings_from_inputs",
    "slerp",
]
