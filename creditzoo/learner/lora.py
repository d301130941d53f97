"""The policy's LoRA adapter: its shape, adding it to a model, and its weights in and out.

The policy is the base model plus one peft LoRA adapter; only the adapter trains, and the reference model of the
KL term is the same network with the adapter disabled. Which layers the adapter targets and its default rank and
alpha are abilities the model declares (:class:`~creditzoo.models.base.FlowModel`: ``lora_target_modules``,
``default_lora_rank``, ``default_lora_alpha``); a run may override rank and alpha.
"""

from __future__ import annotations

import torch

from creditzoo.models.base import FlowModel


def lora_shape(model: FlowModel, rank: int | None = None, alpha: float | None = None) -> tuple[int, float]:
    """(rank, alpha) of the adapter: the given values, else the model's defaults.

    The model declares ``default_lora_rank`` and ``default_lora_alpha`` (toy: 16 / None, SD3: 32 / 64, FLUX:
    64 / 128); the model's alpha applies only with its own rank, otherwise alpha defaults to the rank (scale 1).

    Args:
        model: the base model, whose defaults fill what is not given.
        rank: the run's rank (``TrainConfig.lora_rank``), or None for the model's.
        alpha: the run's alpha (``TrainConfig.lora_alpha``), or None.

    Returns:
        (rank, alpha) with alpha a float.
    """
    model_rank = int(model.default_lora_rank)
    rank = rank if rank is not None else model_rank
    if alpha is not None:
        return rank, float(alpha)
    model_alpha = model.default_lora_alpha
    return rank, float(model_alpha if model_alpha is not None and rank == model_rank else rank)


def lora_targets(model: FlowModel) -> list[str]:
    """The module-name suffixes the adapter targets: the model's ``lora_target_modules``.

    Raises:
        ValueError: the model declares none, so it cannot be trained (one line).
    """
    targets = model.lora_target_modules
    if not targets:
        raise ValueError(f"{type(model).__name__} has no lora_target_modules; name the layers LoRA may adapt")
    return list(targets)


def add_lora(model: FlowModel, *, seed: int, rank: int | None = None, alpha: float | None = None) -> torch.nn.Module:
    """Freeze ``model`` and wrap it in a peft LoRA adapter on its :func:`lora_targets`; only the adapter trains.

    The adapter has dropout 0 and peft's Gaussian initialisation (B = 0, so the policy starts equal to the base
    model); A is drawn from torch's global generator, which is seeded with ``seed`` first, so the same seed gives
    the same adapter.

    Args:
        model: the base model (its parameters are set to ``requires_grad=False``).
        seed: the run seed (``torch.manual_seed(seed)`` before the adapter is drawn).
        rank: the adapter's rank, or None for the model's default (:func:`lora_shape`).
        alpha: the adapter's alpha, or None (:func:`lora_shape`).

    Returns:
        The peft model; its trainable parameters are the adapter's.

    Raises:
        ValueError: the model declares no ``lora_target_modules`` (one line).
    """
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    targets = lora_targets(model)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    rank, alpha = lora_shape(model, rank, alpha)
    lora = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0, init_lora_weights="gaussian")
    return get_peft_model(model, lora)


def adapter_state(policy: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's weights (peft's naming), detached, on the CPU and contiguous.

    Args:
        policy: a model returned by :func:`add_lora`.
    """
    from peft import get_peft_model_state_dict

    return {name: value.detach().cpu().contiguous() for name, value in get_peft_model_state_dict(policy).items()}


def load_adapter_state(policy: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load adapter weights saved by :func:`adapter_state` (or peft's ``save_pretrained``) into ``policy``.

    Args:
        policy: a model returned by :func:`add_lora`.
        state: the adapter's weights, peft's naming.

    Raises:
        ValueError: ``state`` holds keys the adapter does not have (one line naming the first three).
    """
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(policy, state)
    if result.unexpected_keys:
        raise ValueError(f"checkpoint has unexpected LoRA keys: {result.unexpected_keys[:3]}")
