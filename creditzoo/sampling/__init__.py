"""Flow-matching sampler math, apart from any model: sigma grids, the SDE window, ODE/SDE/CPS steps."""

from creditzoo.sampling.schedule import SdeWindow, flow_sigmas, flux_mu, model_sigmas, sde_window
from creditzoo.sampling.sde import SDE_KINDS, SdeStep, gaussian_log_prob, ode_step, sde_step, x0_prediction

__all__ = [
    "SDE_KINDS",
    "SdeStep",
    "SdeWindow",
    "flow_sigmas",
    "flux_mu",
    "gaussian_log_prob",
    "model_sigmas",
    "ode_step",
    "sde_step",
    "sde_window",
    "x0_prediction",
]
