import copy

import pytest
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LMSDiscreteScheduler,
    PNDMScheduler,
)

from animate.diffusion.schedulers import SCHEDULER_NAMES, chosen_scheduler

# Replicate's names for diffusers' schedulers, as the issue lists them.
EXPECTED_CLASSES = {
    "DDIM": DDIMScheduler,
    "DPMSolverMultistep": DPMSolverMultistepScheduler,
    "K_EULER": EulerDiscreteScheduler,
    "K_EULER_ANCESTRAL": EulerAncestralDiscreteScheduler,
    "KLMS": LMSDiscreteScheduler,
    "PNDM": PNDMScheduler,
}
# The noise schedule every choice takes from the weights' scheduler config.
SCHEDULE_KEYS = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "prediction_type")


def test_the_choices_in_order():
    assert SCHEDULER_NAMES == (
        "default", "DDIM", "DPMSolverMultistep", "K_EULER", "K_EULER_ANCESTRAL", "KLMS", "PNDM",
    )


def test_default_is_the_loaded_scheduler_itself(components):
    before = dict(components.scheduler.config)
    assert chosen_scheduler("default", components.scheduler) is components.scheduler
    assert isinstance(components.scheduler, PNDMScheduler)  # what SD 1.5 (and the tiny weights) ship
    assert dict(components.scheduler.config) == before


@pytest.mark.parametrize("name", list(EXPECTED_CLASSES))
def test_each_choice_is_diffusers_class_with_the_weights_schedule(components, name):
    shipped = copy.deepcopy(components.scheduler)
    scheduler = chosen_scheduler(name, shipped)
    assert type(scheduler) is EXPECTED_CLASSES[name]
    assert scheduler is not shipped
    for key in SCHEDULE_KEYS:
        assert scheduler.config[key] == shipped.config[key], key
    if "steps_offset" in scheduler.config:
        assert scheduler.config.steps_offset == shipped.config.steps_offset == 1
    if "clip_sample" in scheduler.config:  # SD 1.5's config sets it off; DDIM's own default is on
        assert scheduler.config.clip_sample is False
    assert dict(shipped.config) == dict(components.scheduler.config)  # left as it was


def test_an_unknown_scheduler_is_refused(components):
    with pytest.raises(ValueError, match="unknown scheduler 'K_DPM_2': the choices are default, DDIM, "):
        chosen_scheduler("K_DPM_2", components.scheduler)
