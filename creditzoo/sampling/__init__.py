"""Flow-matching sampler math, apart from any model: sigma grids, the SDE window, ODE/SDE/CPS steps, step schedules."""

from creditzoo.sampling.schedule import SdeWindow, flow_sigmas, flux_mu, sde_window
from creditzoo.sampling.sde import (
    CPS_LOG_PROBS,
    SDE_KINDS,
    SdeStep,
    gaussian_log_prob,
    ode_step,
    released_cps_log_prob,
    sde_step,
    x0_prediction,
)
from creditzoo.sampling.split_noise import SPLIT_NOISE_FORMS, SplitNoise, parse_split_noise
from creditzoo.sampling.steps import (
    STEP_WEIGHTS,
    SlideSchedule,
    noise_step_weights,
    parse_step_weight,
    parse_train_steps,
    parse_window_schedule,
    train_step_mask,
    window_step_stds,
)

__all__ = [
    "CPS_LOG_PROBS",
    "SDE_KINDS",
    "SPLIT_NOISE_FORMS",
    "STEP_WEIGHTS",
    "SlideSchedule",
    "SplitNoise",
    "noise_step_weights",
    "parse_split_noise",
    "parse_step_weight",
    "parse_train_steps",
    "parse_window_schedule",
    "train_step_mask",
    "window_step_stds",
    "SdeStep",
    "SdeWindow",
    "flow_sigmas",
    "flux_mu",
    "gaussian_log_prob",
    "released_cps_log_prob",
    "ode_step",
    "sde_step",
    "sde_window",
    "x0_prediction",
]
