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

import torch

from creditzoo.models.base import Conditioning, FlowModel, select_conditioning

MODELS: dict[str, str] = {
    "toy": "creditzoo.models.toy:load_toy",
    "sd3": "creditzoo.models.diffusers_sd3:load_sd3",
    "flux": "creditzoo.models.diffusers_flux:load_flux",
}
"""Backend name -> ``"package.module:loader"``; a loader is ``(path | None, *, device, dtype, **options)``."""

PATH_REQUIRED: frozenset[str] = frozenset({"sd3", "flux"})
"""Backends that have no default weights and need ``kind:PATH``."""

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""Weight dtypes a backend may be loaded in (the sampler's mean, std and log-prob stay float32)."""


class ModelError(ValueError):
    """A model spec, option or setting the model cannot take (the CLI reports it as bad input).

    Raised for a spec that names no backend or lacks its path, weights that cannot be loaded offline, unknown or
    invalid backend options, and sampler settings a backend refuses (e.g. classifier-free guidance on FLUX.1-dev).
    """


VALID_SPECS = "toy, toy:PATH, sd3:PATH, flux:PATH (or package.module:function)"


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
        ModelError: unknown backend, missing path or a path that does not exist, listing the valid forms.
    """
    kind, sep, path = spec.partition(":")
    if dtype not in DTYPES.values():
        raise ModelError(f"unsupported dtype {dtype}; valid: {', '.join(DTYPES)}")
    if kind in MODELS:
        if kind in PATH_REQUIRED and not path:
            raise ModelError(f"model {kind!r} needs a path, e.g. {kind}:/path/to/weights; valid forms: {VALID_SPECS}")
        if sep and not path:
            raise ModelError(f"empty path in model spec {spec!r}; valid forms: {VALID_SPECS}")
        module_name, _, attribute = MODELS[kind].partition(":")
        loader = getattr(importlib.import_module(module_name), attribute)
        accepted = [name for name in inspect.signature(loader).parameters if name not in ("path", "device", "dtype")]
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ModelError(
                f"unknown option(s) {', '.join(unknown)} for {kind}; valid: {', '.join(accepted) or 'none'}"
            )
        try:
            return loader(path or None, device=device, dtype=dtype, **options)
        except ModelError:
            raise
        except ValueError as error:  # a backend's check of its options (resolution, guidance, ...)
            raise ModelError(f"{kind}: {error}") from error
    if sep and path.isidentifier():
        try:
            module = importlib.import_module(kind)
        except ImportError as error:
            raise ModelError(f"unknown model {spec!r} ({error}); valid forms: {VALID_SPECS}") from error
        if not hasattr(module, path):
            raise ModelError(f"unknown model {spec!r}: {kind} has no {path!r}; valid forms: {VALID_SPECS}")
        if dtype != torch.float32 or options:
            raise ModelError(f"model {spec!r} takes no dtype or options; valid forms: {VALID_SPECS}")
        return getattr(module, path)().to(device)
    raise ModelError(f"unknown model {spec!r}; valid forms: {VALID_SPECS}")


__all__ = [
    "DTYPES",
    "MODELS",
    "ModelError",
    "Conditioning",
    "FlowModel",
    "load_model",
    "parse_dtype",
    "select_conditioning",
]
