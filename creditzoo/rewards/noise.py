"""Reward noise for robustness experiments (docs/math.md section 8).

A noise model wraps any reward callable ``(images [B, 3, H, W], prompts) -> Tensor[B]`` and perturbs every
score it returns, completion rewards included. The kinds, written ``kind:PARAM[:PARAM]``:

* ``gaussian:SD``: adds ``SD * N(0, 1)``, drawn afresh for every score.
* ``uniform:HALFWIDTH``: adds ``U(-HALFWIDTH, HALFWIDTH)``.
* ``student_t:DF:SCALE``: adds ``SCALE * t_DF`` (variance ``SCALE^2 * DF / (DF - 2)`` for DF > 2; for
  DF <= 2 the variance is infinite and for DF <= 1 even the mean is undefined: heavy tails on purpose).
  Drawn with Bailey's polar method (Bailey 1994, "Polar generation of random variates with the
  t-distribution", Math. Comp. 62), which is exact for every DF > 0 and needs only uniform draws, so it
  runs off our own ``torch.Generator`` (``torch.distributions`` samplers take no generator).
* ``bias:SD``: adds a fixed offset ``SD * z(prompt)`` per prompt, ``z ~ N(0, 1)``. The offset is a pure
  function of (constructor seed, prompt text) through BLAKE2b and Box-Muller: constant for the life of
  the object, independent of call order and batch order, and unchanged by :meth:`NoisyReward.manual_seed`.
* ``quantize:STEP``: ``round(score / STEP) * STEP`` (round half to even, ``torch.round``); deterministic.
* ``flip:P``: with probability P a score is replaced by ``U(low, high)``, a random score from the reward's
  range; ``low=0, high=1`` by default (rewards assumed in [0, 1]); set them on :class:`NoisyReward`.

Ranges: SD, HALFWIDTH and SCALE may be 0 (a zero-noise control that still runs the noise path); DF and STEP
must be > 0; P lies in [0, 1]; every parameter must be finite. ``"none"`` parses to ``None``, the single
representation of "no noise" (``NoisyReward(fn, None)`` records clean == noisy and draws nothing).

Repeats (docs/math.md section 10.1): ``NoisyReward(..., repeats=N)`` scores every image N times, each call a
fresh draw of the noise (and a fresh call of the wrapped reward, which may itself be random, e.g. a judge sampling
at a temperature). :class:`NoisyScores` then holds the mean of the N noisy scores, the mean of the N clean ones,
the per-image sample variance (ddof 1) of the noisy ones and N; :func:`pooled_noise_sd` turns a batch of such
variances into the per-call noise SD. Means are taken in float64; a reward that returns the same clean scores on
every call keeps them as they are.

Repeatability: per-call draws come from a CPU ``torch.Generator`` owned by the :class:`NoisyReward` (the
noise, a [B] vector, is then moved to the scores' device, so a run repeats across devices). The learner
reseeds it with :meth:`NoisyReward.manual_seed` at the start of every iteration, from (run seed, iteration),
so a run resumed at any iteration draws the same noise without storing the generator (the ``bias`` offsets are
a pure function of seed and prompt). :meth:`NoisyReward.state_dict` is there for code that draws across
iterations without reseeding.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from creditzoo.rewards import RewardFn

NOISE_KINDS: dict[str, tuple[str, ...]] = {
    "gaussian": ("SD",),
    "uniform": ("HALFWIDTH",),
    "student_t": ("DF", "SCALE"),
    "bias": ("SD",),
    "quantize": ("STEP",),
    "flip": ("P",),
}
"""Noise kind -> the names of its parameters, in the order they are written."""

VALID_FORMS = ", ".join(":".join((kind, *names)) for kind, names in NOISE_KINDS.items()) + ", none"
"""``"gaussian:SD, uniform:HALFWIDTH, ..., none"``: quoted by every parse error."""

_PARAM_RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "SD": (lambda v: v >= 0, ">= 0"),
    "HALFWIDTH": (lambda v: v >= 0, ">= 0"),
    "SCALE": (lambda v: v >= 0, ">= 0"),
    "DF": (lambda v: v > 0, "> 0"),
    "STEP": (lambda v: v > 0, "> 0"),
    "P": (lambda v: 0 <= v <= 1, "in [0, 1]"),
}


def _malformed(text: str, problem: str) -> ValueError:
    return ValueError(f"malformed reward noise {text!r}: {problem}; valid forms: {VALID_FORMS}")


def _check_form(kind: str, count: int, text: str) -> None:
    if kind not in NOISE_KINDS:
        raise _malformed(text, f"unknown kind {kind!r}")
    names = NOISE_KINDS[kind]
    if count != len(names):
        plural = "" if len(names) == 1 else "s"
        raise _malformed(text, f"{kind} takes {len(names)} parameter{plural} ({', '.join(names)}), got {count}")


def _check_values(kind: str, params: tuple[float, ...], text: str) -> None:
    for name, value in zip(NOISE_KINDS[kind], params, strict=True):
        in_range, rule = _PARAM_RANGES[name]
        if not math.isfinite(value) or not in_range(value):
            raise _malformed(text, f"{name} must be a finite number {rule}, got {value!r}")


@dataclass(frozen=True)
class NoiseSpec:
    """A validated noise model; ``str(spec)`` is its canonical text, which :func:`parse_noise_spec` reads back.

    Attributes:
        kind: one of :data:`NOISE_KINDS` ("gaussian", "uniform", "student_t", "bias", "quantize", "flip").
        params: the kind's parameters as floats, in the order of ``NOISE_KINDS[kind]``.
    """

    kind: str
    params: tuple[float, ...]

    def __post_init__(self) -> None:
        try:
            params = tuple(float(p) for p in self.params)
        except (TypeError, ValueError):
            raise _malformed(f"{self.kind}:{self.params!r}", "parameters must be a tuple of numbers") from None
        object.__setattr__(self, "params", params)
        text = ":".join((str(self.kind), *(repr(p) for p in params)))
        _check_form(self.kind, len(params), text)
        _check_values(self.kind, params, text)

    def __str__(self) -> str:
        return ":".join((self.kind, *(repr(p) for p in self.params)))


def per_call_sd(spec: NoiseSpec | None) -> float:
    """The SD of one call's noise that a noise-aware scheme is told about a noise model (docs/math.md section 10.1).

    What ``--reward-noise-sd X`` would declare for rewards carrying this noise, for counterfactual replays:
    gaussian: SD; uniform: HALFWIDTH / sqrt(3); student_t: SCALE * sqrt(DF / (DF - 2)) for DF > 2, and SCALE for
    DF <= 2 (the variance is infinite; the scale is the only finite spread there is); bias: 0 (a per-prompt offset
    is the same in every score of a trajectory, so it cancels in every increment); quantize: STEP / sqrt(12) (the
    rounding error of a score spread over many steps); flip: sqrt(P / 3), the RMS change of a score replaced by
    U(0, 1) at its worst (a clean score at 0 or 1); a declared value, not an exact one. No noise: 0.

    Args:
        spec: a parsed noise model, or None.

    Returns:
        The declared per-call SD, >= 0.
    """
    if spec is None:
        return 0.0
    first, last = spec.params[0], spec.params[-1]
    if spec.kind == "gaussian":
        return float(first)
    if spec.kind == "uniform":
        return float(first) / math.sqrt(3.0)
    if spec.kind == "student_t":
        return float(last) * math.sqrt(first / (first - 2.0)) if first > 2 else float(last)
    if spec.kind == "bias":
        return 0.0
    if spec.kind == "quantize":
        return float(first) / math.sqrt(12.0)
    if spec.kind == "flip":
        return math.sqrt(float(first) / 3.0)
    raise ValueError(f"unknown noise kind {spec.kind!r}; valid: {', '.join(NOISE_KINDS)}")


def parse_noise_spec(text: str) -> NoiseSpec | None:
    """Parse ``"kind:PARAM[:PARAM]"`` (e.g. ``"student_t:5:0.1"``) into a :class:`NoiseSpec`.

    Args:
        text: a noise form from :data:`VALID_FORMS`; surrounding whitespace is ignored, the kind is
            case-sensitive.

    Returns:
        The spec, or ``None`` for ``"none"`` (no noise).

    Raises:
        ValueError: one line naming the problem (unknown kind, wrong parameter count, a parameter that is not
            a number or out of range) and listing the valid forms.
    """
    stripped = text.strip()
    if stripped == "none":
        return None
    kind, *fields = stripped.split(":")
    _check_form(kind, len(fields), text)
    params = []
    for name, field_text in zip(NOISE_KINDS[kind], fields, strict=True):
        try:
            params.append(float(field_text))
        except ValueError:
            raise _malformed(text, f"{name} must be a number, got {field_text!r}") from None
    _check_values(kind, tuple(params), text)
    return NoiseSpec(kind, tuple(params))


@dataclass(frozen=True)
class NoisyScores:
    """A batch of scores with and without noise.

    Attributes:
        noisy: float [B], what the learner trains on (with repeats, the mean of the N noisy scores).
        clean: float [B], the wrapped reward's own scores (with repeats, their mean), same shape, dtype and device.
        variance: float [B], the sample variance (ddof 1) of each image's N noisy scores, or None when N = 1.
        repeats: N, the reward calls made per image.
    """

    noisy: torch.Tensor
    clean: torch.Tensor
    variance: torch.Tensor | None = None
    repeats: int = 1

    def __post_init__(self) -> None:
        if self.noisy.shape != self.clean.shape or self.clean.ndim != 1:
            raise ValueError(
                f"noisy and clean scores must both have shape [B], got {list(self.noisy.shape)} "
                f"and {list(self.clean.shape)}"
            )
        if (self.variance is None) != (self.repeats == 1) or self.repeats < 1:
            raise ValueError(f"a variance comes with repeats >= 2 and only then, got repeats={self.repeats}")
        if self.variance is not None and self.variance.shape != self.noisy.shape:
            raise ValueError(f"variance must have shape {list(self.noisy.shape)}, got {list(self.variance.shape)}")


def pooled_noise_sd(variances: torch.Tensor) -> float:
    """The per-call noise SD pooled from per-image sample variances: sqrt(mean of the variances).

    Each variance is an unbiased estimate of sigma^2 from the same number of repeats, so their mean is too (and
    has B * (N - 1) degrees of freedom); its square root is the estimate of sigma (biased low by a fraction of
    order 1 / (4 B (N - 1))). A noiseless reward gives exactly 0.

    Args:
        variances: float [...] per-image sample variances (ddof 1) of N >= 2 repeated scores.

    Returns:
        sigma-hat >= 0.
    """
    return float(variances.double().mean().sqrt())


def _standard_normal_from_text(seed: int, text: str) -> float:
    """A N(0, 1) draw that is a pure function of (seed, text): BLAKE2b bits through Box-Muller."""
    digest = hashlib.blake2b(f"{seed}\x00{text}".encode(), digest_size=16).digest()
    u1 = (int.from_bytes(digest[:8], "little") >> 11) + 1  # in [1, 2^53]: u1 / 2^53 in (0, 1]
    u2 = int.from_bytes(digest[8:], "little") >> 11
    return math.sqrt(-2.0 * math.log(u1 / 2.0**53)) * math.cos(2.0 * math.pi * u2 / 2.0**53)


def _student_t(n: int, df: float, generator: torch.Generator) -> torch.Tensor:
    """``n`` standard Student-t draws (float64, CPU) by Bailey's polar method.

    (U, V) uniform on the unit disc, W = U^2 + V^2; then T = U * sqrt(df * (W^(-2/df) - 1) / W).
    Rejection keeps pi/4 of each round; every round is one vectorised draw over the samples still missing.
    """
    out = torch.empty(n, dtype=torch.float64)  # [n]
    todo = torch.arange(n)  # indices still to fill
    while todo.numel() > 0:
        u, v = torch.rand(2, todo.numel(), generator=generator, dtype=torch.float64) * 2 - 1  # [m] each
        w = u * u + v * v
        ok = (w > 0) & (w <= 1)
        w_ok = w[ok]
        # expm1(-2/df * log w) = w^(-2/df) - 1 without cancellation when df is large.
        out[todo[ok]] = u[ok] * torch.sqrt(df * torch.expm1(-2.0 / df * torch.log(w_ok)) / w_ok)
        todo = todo[~ok]
    return out


class NoisyReward:
    """A reward callable whose scores carry seeded noise; itself a reward callable.

    Args:
        reward_fn: ``(images [B, 3, H, W] in [0, 1], prompts) -> float Tensor[B]``.
        spec: the noise model, or ``None`` for none (clean scores pass through, no draws).
        seed: initial seed of the per-call generator, and the seed of the per-prompt ``bias`` offsets
            (which :meth:`manual_seed` leaves alone).
        low: lower end of the reward's range, for ``flip``.
        high: upper end of the reward's range, for ``flip``.
        repeats: N >= 1, calls per image; the scores are the means of N calls (see :class:`NoisyScores`).

    Example:
        >>> reward = NoisyReward(lambda x, p: x.mean(dim=(1, 2, 3)), parse_noise_spec("gaussian:0.05"), seed=1)
        >>> scores = reward.score(torch.rand(4, 3, 8, 8), ["a"] * 4)  # scores.noisy, scores.clean: [4]
    """

    def __init__(
        self,
        reward_fn: RewardFn,
        spec: NoiseSpec | None,
        *,
        seed: int = 0,
        low: float = 0.0,
        high: float = 1.0,
        repeats: int = 1,
    ) -> None:
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
            raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")
        if spec is not None and not isinstance(spec, NoiseSpec):
            raise TypeError(f"spec must be a NoiseSpec or None (see parse_noise_spec), got {type(spec).__name__}")
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"the reward range needs finite low < high, got low={low!r}, high={high!r}")
        self.reward_fn = reward_fn
        self.spec = spec
        self.low = float(low)
        self.high = float(high)
        self.repeats = repeats
        self._seed = int(seed)
        self._bias: dict[str, float] = {}  # prompt -> offset, filled lazily; a cache of a pure function
        self._generator = torch.Generator(device="cpu")
        self._generator.manual_seed(self._seed)

    @property
    def seed(self) -> int:
        """The constructor seed: the bias offsets' seed (the generator may since have been reseeded)."""
        return self._seed

    def manual_seed(self, seed: int) -> None:
        """Reseed the per-call generator (gaussian, uniform, student_t, flip draws); bias offsets stay put.

        Args:
            seed: the new seed, e.g. derived from (run seed, iteration) by the learner.
        """
        self._generator.manual_seed(int(seed))

    def score(self, images: torch.Tensor, prompts: list[str]) -> NoisyScores:
        """Score a batch with the wrapped reward and perturb the scores.

        Args:
            images: float [B, 3, H, W] in [0, 1].
            prompts: B prompts, one per image.

        Returns:
            :class:`NoisyScores` with ``clean`` (the wrapped reward's output, [B]) and ``noisy`` ([B]); with
            repeats, their means over the N calls and the noisy scores' per-image sample variance.

        Raises:
            ValueError: if ``len(prompts) != B`` or the wrapped reward does not return a float tensor [B].
        """
        batch = images.shape[0]
        if len(prompts) != batch:
            raise ValueError(f"got {batch} images but {len(prompts)} prompts")
        cleans, draws = [], []
        for _ in range(self.repeats):  # call after call: the noise draws in the order of a plain loop
            clean = self.reward_fn(images, prompts)  # [B]
            if not isinstance(clean, torch.Tensor) or clean.shape != (batch,) or not clean.is_floating_point():
                kind = f"{clean.dtype} {list(clean.shape)}" if isinstance(clean, torch.Tensor) else type(clean).__name__
                raise ValueError(f"the wrapped reward must return a float tensor of shape [B={batch}], got {kind}")
            cleans.append(clean)
            draws.append(self._perturb(clean, prompts))
        if self.repeats == 1:
            return NoisyScores(noisy=draws[0], clean=cleans[0])
        noisy = torch.stack(draws, dim=1).double()  # [B, N]
        deterministic = all(torch.equal(other, cleans[0]) for other in cleans[1:])
        return NoisyScores(
            noisy=noisy.mean(1).to(clean.dtype),
            clean=cleans[0] if deterministic else torch.stack(cleans, dim=1).double().mean(1).to(clean.dtype),
            variance=noisy.var(1, correction=1).to(clean.dtype),
            repeats=self.repeats,
        )

    def __call__(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """The noisy scores, float [B]: a :class:`NoisyReward` is itself a reward callable."""
        return self.score(images, prompts).noisy

    def _perturb(self, clean: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        if self.spec is None:
            return clean.clone()
        kind, params, batch, gen = self.spec.kind, self.spec.params, clean.shape[0], self._generator
        if kind == "quantize":
            return torch.round(clean / params[0]) * params[0]
        if kind == "flip":
            flip = torch.rand(batch, generator=gen, dtype=torch.float64) < params[0]  # [B] bool
            random = self.low + (self.high - self.low) * torch.rand(batch, generator=gen, dtype=torch.float64)
            random = random.to(device=clean.device, dtype=clean.dtype)  # [B]
            return torch.where(flip.to(clean.device), random, clean)
        if kind == "gaussian":
            noise = params[0] * torch.randn(batch, generator=gen, dtype=torch.float64)  # [B]
        elif kind == "uniform":
            noise = params[0] * (2 * torch.rand(batch, generator=gen, dtype=torch.float64) - 1)  # [B]
        elif kind == "student_t":
            noise = params[1] * _student_t(batch, params[0], gen)  # [B]
        elif kind == "bias":
            noise = params[0] * torch.tensor([self._bias_z(p) for p in prompts], dtype=torch.float64)  # [B]
        else:  # NoiseSpec validates kinds, so only a kind added to NOISE_KINDS but not here gets here
            raise NotImplementedError(f"reward noise kind {kind!r} has no implementation")
        return clean + noise.to(device=clean.device, dtype=clean.dtype)

    def _bias_z(self, prompt: str) -> float:
        if prompt not in self._bias:
            self._bias[prompt] = _standard_normal_from_text(self._seed, prompt)
        return self._bias[prompt]

    def state_dict(self) -> dict[str, Any]:
        """The state a resumed run needs: the spec (checked on load), the seed and the generator state."""
        return {
            "spec": "none" if self.spec is None else str(self.spec),
            "seed": self._seed,
            "generator": self._generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output.

        Args:
            state: from :meth:`state_dict`.

        Raises:
            ValueError: if the state was saved with a different noise spec.
        """
        mine = "none" if self.spec is None else str(self.spec)
        if state["spec"] != mine:
            raise ValueError(f"state was saved with reward noise {state['spec']!r}, this reward has {mine!r}")
        self._seed = int(state["seed"])
        self._bias.clear()
        self._generator.set_state(state["generator"])

    def __repr__(self) -> str:
        return f"NoisyReward({self.reward_fn!r}, spec={str(self.spec)!r}, seed={self._seed}, repeats={self.repeats})"
