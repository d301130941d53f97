"""The policy's LoRA adapter: its shape, adding it to a model, and its weights in and out.

The policy is the base model plus one peft LoRA adapter; only the adapter trains, and the reference model of the
KL term is the same network with the adapter disabled. Which layers the adapter targets and its default rank and
alpha are abilities the model declares (:class:`~creditzoo.models.base.FlowModel`: ``lora_target_modules``,
``default_lora_rank``, ``default_lora_alpha``); a run may override rank and alpha.

How an adapted layer is computed is a run option (``TrainConfig.lora_compute``, docs/design.md "Computing the
adapter"). ``peft`` (the default) is peft's own forward, ``base(x) + B(A(x)) * s``: two extra small convolutions or
matrix products per layer. ``merged`` computes the layer as one operation with the weight ``W + s * B @ A``, formed
inside autograd when gradients are on (and kept between no-grad CPU calls while A and B are unchanged), so that
gradients still reach A and B and the policy, its weights and its saved adapter are the same objects as with peft.
This is the low-rank update of Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models" (ICLR 2022), Eq. 3,
evaluated in its merged form. It gives the same function, with float32 rounding in another order; it changes a
run's numbers (and in RL, its trajectory) like any rounding change.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F

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


LORA_COMPUTES = ("peft", "merged")
"""Ways to compute an adapted layer (``TrainConfig.lora_compute``): peft's forward, or one merged weight."""


def compute_lora_merged(policy: torch.nn.Module) -> int:
    """Compute every plain LoRA layer of ``policy`` as one operation with its merged weight ``W + s * B @ A``.

    Each peft ``Linear`` and ``Conv2d`` LoRA layer with one adapter, no dropout, no DoRA or other variant, and a
    1x1 ``lora_B`` gets a forward that calls ``F.linear`` / ``F.conv2d`` with the weight
    ``W + scaling * (B.flatten(1) @ A.flatten(1))``. With gradients enabled the merged weight is formed in the call,
    inside autograd, so the update's gradients reach A and B as with peft (W is frozen). Without gradients on the
    CPU (sampling, completions, evaluation) it is kept and reused while A and B equal the copies kept with it
    (compared exactly, so an optimizer step, a loaded state or any other write is seen) and W is the same tensor.
    W is frozen. peft's ``merge_adapter`` and ``unmerge_adapter`` write it in place; a call while merged goes to
    peft's forward and drops the kept weight, but a merge and unmerge with no call between them leave W changed by
    rounding and the kept weight in use (creditzoo never merges). The same operations give the same numbers, so
    reuse changes nothing. On a GPU the weight is formed in every call: there the products are cheap, and the
    comparison would make each layer wait for the device. Anything peft handles specially (adapters disabled, as
    for the KL reference; weights merged by ``merge_adapter``; several or mixed adapters) goes to peft's own
    forward, so it gives peft's numbers. Other layers keep peft's forward.

    Args:
        policy: a model returned by :func:`add_lora`, with float32 weights.

    Returns:
        How many layers now compute merged.

    Raises:
        ValueError: a layer's weights are not float32 (merging would round the adapter to the model's dtype).
    """
    from peft.tuners.lora import layer as lora_layers

    count = 0
    for name, module in policy.named_modules():
        if not isinstance(module, (lora_layers.Linear, lora_layers.Conv2d)) or not _mergeable(module):
            continue
        if module.get_base_layer().weight.dtype != torch.float32:
            raise ValueError(
                f"lora_compute=merged needs float32 weights; {name} is {module.get_base_layer().weight.dtype} "
                "(use lora_compute=peft)"
            )
        module.forward = types.MethodType(_merged_forward, module)
        count += 1
    return count


def _mergeable(layer: torch.nn.Module) -> bool:
    """Whether ``layer`` (a peft LoRA layer) is a plain LoRA that one merged weight computes exactly."""
    base = layer.get_base_layer()
    if list(layer.lora_A) != ["default"] or layer.lora_variant or layer.use_dora.get("default", False):
        return False
    if getattr(layer, "lora_bias", {}).get("default", False):
        return False
    if not isinstance(layer.lora_dropout["default"], torch.nn.Identity):
        return False
    if isinstance(base, torch.nn.Linear):
        return not layer.fan_in_fan_out
    if isinstance(base, torch.nn.Conv2d):
        lora_a, lora_b = layer.lora_A["default"], layer.lora_B["default"]
        same_window = (lora_a.kernel_size, lora_a.stride, lora_a.padding, lora_a.dilation) == (
            base.kernel_size,
            base.stride,
            base.padding,
            base.dilation,
        )
        return same_window and base.groups == 1 and lora_b.kernel_size == (1, 1) and base.padding_mode == "zeros"
    return False


def _merged_forward(self: torch.nn.Module, x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
    """A plain LoRA layer's forward as one operation with ``W + s * B @ A`` (bound by :func:`compute_lora_merged`)."""
    if self.disable_adapters or self.merged or args or kwargs or list(self.active_adapters) != ["default"]:
        if self.merged:  # peft's merge and unmerge write W in place: the kept merged weight no longer holds
            self.__dict__.pop("_merged_cache", None)
        return type(self).forward(self, x, *args, **kwargs)
    base = self.get_base_layer()
    lora_a, lora_b = self.lora_A["default"].weight, self.lora_B["default"].weight
    scaling = self.scaling["default"]
    if torch.is_grad_enabled() or x.device.type != "cpu":
        weight = _merged_weight(base.weight, lora_a, lora_b, scaling)
    else:  # sampling, completions, evaluation on the CPU: reuse the merged weight while A, B and W are unchanged
        cached = self.__dict__.get("_merged_cache")  # (W's address, scaling, copy of A, copy of B, merged weight)
        if not (
            cached is not None
            and cached[:2] == (base.weight.data_ptr(), scaling)
            and torch.equal(cached[2], lora_a)
            and torch.equal(cached[3], lora_b)
        ):
            merged = _merged_weight(base.weight, lora_a, lora_b, scaling)
            cached = (base.weight.data_ptr(), scaling, lora_a.detach().clone(), lora_b.detach().clone(), merged)
            self.__dict__["_merged_cache"] = cached
        weight = cached[4]
    if isinstance(base, torch.nn.Conv2d):
        return F.conv2d(x, weight, base.bias, base.stride, base.padding, base.dilation, base.groups)
    return F.linear(x, weight, base.bias)


def _merged_weight(weight: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor, scaling: float) -> torch.Tensor:
    """``W + scaling * B @ A`` in W's shape (A [r, ...], B [out, r, ...] flattened to matrices)."""
    return weight + (lora_b.flatten(1) @ lora_a.flatten(1)).view_as(weight) * scaling


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
