"""The samplers a request can choose (docs/behaviour.md, "The walk"), by Replicate's names.

Each is diffusers' own scheduler class, built from the configuration of the scheduler the
weights ship with (its noise schedule: betas, train timesteps, offset), as diffusers'
`from_config` does when one swaps a pipeline's scheduler. "default" is the shipped one itself.
"""

from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

# The scheduler classes by the names Replicate's Stable Diffusion models give them.
SCHEDULER_CLASSES: dict[str, type[SchedulerMixin]] = {
    "DDIM": DDIMScheduler,
    "DPMSolverMultistep": DPMSolverMultistepScheduler,
    "K_EULER": EulerDiscreteScheduler,
    "K_EULER_ANCESTRAL": EulerAncestralDiscreteScheduler,
    "KLMS": LMSDiscreteScheduler,
    "PNDM": PNDMScheduler,
}
# The `scheduler` input's choices, in the order predict.py declares them.
SCHEDULER_NAMES = ("default", *SCHEDULER_CLASSES)


def chosen_scheduler(name: str, shipped: SchedulerMixin) -> SchedulerMixin:
    """The scheduler called `name`, configured like `shipped` (the weights' own scheduler).

    "default" returns `shipped` itself, unchanged; the walk only ever uses copies of it.
    """
    if name == "default":
        return shipped
    if name not in SCHEDULER_CLASSES:
        raise ValueError(f"unknown scheduler {name!r}: the choices are {', '.join(SCHEDULER_NAMES)}")
    return SCHEDULER_CLASSES[name].from_config(shipped.config)
