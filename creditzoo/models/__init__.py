"""Flow-matching model backends behind one small interface (:class:`creditzoo.models.base.FlowModel`).

Only the modules in this package know a model's internals; heavy imports happen inside them, lazily.

``MODELS`` is the table of backends. A model spec names one and, where it needs one, a path:

==================  =========================================================================================
spec                model
==================  =========================================================================================
``toy``             the embedded GenEval-style toy model (``creditzoo/assets/toy_geneval.safetensors``)
``toy:PATH``        a toy model saved by :func:`creditzoo.models.toy.save_toy_model`
``sd3:PATH``        Stable Diffusion 3 / 3.5 through diffusers (:mod:`creditzoo.models.diffusers_sd3`)
``flux:PATH``       FLUX.1 through diffusers (:mod:`creditzoo.models.diffusers_flux`)
==================  =========================================================================================

PATH is a local diffusers folder (``pipe.save_pretrained``) or a hub id found in the local cache only
(nothing is downloaded). A spec ``package.module:function`` whose prefix is not a backend calls that function
with no arguments (e.g. a test's model), as the other registries of the package do.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass

import torch

from creditzoo.models.base import Conditioning, FlowModel, select_conditioning


@dataclass(frozen=True)
class Backend:
    """One registered model backend: how a ``--model`` spec of its name is loaded.

    Attributes:
        loader: ``"package.module:function"``, imported only when the backend is used; the function is
            ``(path | None, *, device, dtype, **options) -> FlowModel``, and its keyword options are the backend's
            options (``[model_options]``).
        needs_path: whether the spec must name weights (``kind:PATH``); False means the loader has defaults.
        example: the spec forms it accepts, for error messages and docs (e.g. ``"sd3:PATH"``).
    """

    loader: str
    needs_path: bool
    example: str

    def __post_init__(self) -> None:
        module, sep, function = self.loader.partition(":")
        if not (module and sep and function):
            raise ValueError(f"Backend.loader must be 'package.module:function', got {self.loader!r}")
        if not isinstance(self.needs_path, bool) or not self.example:
            raise ValueError("Backend.needs_path must be True or False and Backend.example a non-empty string")


MODELS: dict[str, Backend] = {
    "toy": Backend("creditzoo.models.toy:load_toy", needs_path=False, example="toy, toy:PATH"),
    "sd3": Backend("creditzoo.models.diffusers_sd3:load_sd3", needs_path=True, example="sd3:PATH"),
    "flux": Backend("creditzoo.models.diffusers_flux:load_flux", needs_path=True, example="flux:PATH"),
}
"""Backend name -> :class:`Backend`. Adding a backend is one module (its loader) and one entry here."""


DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""Weight dtypes a backend may be loaded in (the sampler's mean, std and log-prob stay float32)."""


class ModelError(ValueError):
    """A model spec, option or setting the model cannot take (the CLI reports it as bad input).

    Raised for a spec that names no backend or lacks its path, weights that cannot be loaded offline, unknown or
    invalid backend options, and sampler settings a backend refuses (e.g. classifier-free guidance on FLUX.1-dev).
    """


def valid_specs() -> str:
    """The model spec forms the registered backends accept, for error messages."""
    return ", ".join(backend.example for backend in MODELS.values()) + " (or package.module:function)"


def parse_dtype(name: str) -> torch.dtype:
    """The torch dtype of a ``--dtype`` name.

    Raises:
        ValueError: for a name not in :data:`DTYPES`, listing the valid ones.
    """
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; valid: {', '.join(DTYPES)}")
    return DTYPES[name]


def load_model(spec: str, *, device: torch.device, dtype: torch.dtype = torch.float32, **options: object) -> FlowModel:
    """Build the model a spec names, with its weights straight on ``device`` in ``dtype``.

    Args:
        spec: ``toy``, ``toy:PATH``, ``sd3:PATH``, ``flux:PATH`` or ``package.module:function``.
        device: where the weights go.
        dtype: weight dtype (one of :data:`DTYPES`' values).
        **options: backend options (e.g. ``resolution=512`` for sd3 and flux), passed to the loader.

    Returns:
        A :class:`FlowModel` (an ``nn.Module``) in eval mode.

    Raises:
        ModelError: unknown backend, missing path or a path that does not exist, listing the valid forms; a
            loader that builds something other than a :class:`FlowModel`.
    """
    kind, sep, path = spec.partition(":")
    if dtype not in DTYPES.values():
        raise ModelError(f"unsupported dtype {dtype}; valid: {', '.join(DTYPES)}")
    if kind in MODELS:
        backend = MODELS[kind]
        if backend.needs_path and not path:
            raise ModelError(f"model {kind!r} needs a path, e.g. {kind}:/path/to/weights; valid forms: {valid_specs()}")
        if sep and not path:
            raise ModelError(f"empty path in model spec {spec!r}; valid forms: {valid_specs()}")
        module_name, _, attribute = backend.loader.partition(":")
        loader = getattr(importlib.import_module(module_name), attribute)
        accepted = [name for name in inspect.signature(loader).parameters if name not in ("path", "device", "dtype")]
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ModelError(
                f"unknown option(s) {', '.join(unknown)} for {kind}; valid: {', '.join(accepted) or 'none'}"
            )
        try:
            return _flow_model(spec, loader(path or None, device=device, dtype=dtype, **options))
        except ModelError:
            raise
        except ValueError as error:  # a backend's check of its options (resolution, guidance, ...)
            raise ModelError(f"{kind}: {error}") from error
    if sep and path.isidentifier():
        try:
            module = importlib.import_module(kind)
        except ImportError as error:
            raise ModelError(f"unknown model {spec!r} ({error}); valid forms: {valid_specs()}") from error
        if not hasattr(module, path):
            raise ModelError(f"unknown model {spec!r}: {kind} has no {path!r}; valid forms: {valid_specs()}")
        if dtype != torch.float32 or options:
            raise ModelError(f"model {spec!r} takes no dtype or options; valid forms: {valid_specs()}")
        return _flow_model(spec, getattr(module, path)()).to(device)
    raise ModelError(f"unknown model {spec!r}; valid forms: {valid_specs()}")


def _flow_model(spec: str, model: object) -> FlowModel:
    """``model`` itself if it is a :class:`FlowModel` (which declares every ability the learner reads)."""
    if not isinstance(model, FlowModel):
        raise ModelError(f"model {spec!r} built a {type(model).__name__}, not a creditzoo.models.base.FlowModel")
    return model


__all__ = [
    "DTYPES",
    "MODELS",
    "Backend",
    "ModelError",
    "Conditioning",
    "FlowModel",
    "load_model",
    "parse_dtype",
    "select_conditioning",
    "valid_specs",
]
