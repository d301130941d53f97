"""Client for the GenEval reward server that Flow-GRPO's users run (Mask2Former detector + CLIP colour classifier).

GenEval (Ghosh et al., NeurIPS 2023) needs an object detector and a CLIP colour classifier whose dependencies
(mmdet, open_clip) do not install beside a current diffusers; Flow-GRPO (Liu et al., 2025) therefore runs it
as a separate HTTP server (its ``reward-server`` repository, after ddpo-pytorch's LLaVA server) and this module
speaks that server's protocol:

* **Request**: ``POST /`` whose body is ``pickle.dumps({"images": [JPEG bytes, ...], "meta_datas": [GenEval
  metadata dict, ...], "only_strict": bool})``; images are RGB, JPEG-encoded by PIL at its default quality
  (as Flow-GRPO's client does); each metadata dict is the prompt's line of GenEval's metadata JSONL
  (``prompt``, ``tag``, ``include``, ...; see :mod:`creditzoo.tasks.prompts`).
* **Response** (HTTP 200): ``pickle.dumps({"scores": [...], "rewards": [...], "strict_rewards": [...],
  "group_rewards": {...}, "group_strict_rewards": {...}})``, one float per image in each list:

  - ``scores``: the partial score Flow-GRPO trains on: the mean over the prompt's clauses of
    ``1 - |n_requested - n_found| / n_requested`` per object, and 0/1 per colour and position clause;
  - ``rewards``: GenEval's correctness (at least the requested count, colours and positions right, no
    excluded objects); the server skips it and sends 0 when ``only_strict`` is true;
  - ``strict_rewards``: correctness with exact counts.

  A server-side error answers HTTP 500 with the traceback as text.

**Security.** The protocol pickles its payloads, and unpickling data from a server can run code. This client
talks only to the URL you give it (there is no default host) and unpickles the response with an allowlist
that admits only plain containers, numbers and strings (and numpy scalars), which stops the known code-running
payloads but is no substitute for trust: point it only at a server you run or trust, on a network you trust.

The client ignores proxy settings (``http_proxy``) and does not follow redirects, so requests go to the
given URL only.

Robustness: every request has a timeout; connection errors, timeouts and HTTP 5xx answers are retried with
exponential backoff, up to ``retries`` more attempts; then :class:`GenEvalServerError` says what failed.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from creditzoo.rewards._images import to_uint8_images

if TYPE_CHECKING:
    from creditzoo.tasks.prompts import PromptSet

URL_ENV = "CREDITZOO_GENEVAL_URL"
"""Environment variable naming the GenEval server the ``geneval_server`` task's rewards and scorer use."""

NEEDS_METADATA = (
    "the GenEval server scores against GenEval metadata: give the prompts as GenEval .jsonl files "
    "(--prompts train_metadata.jsonl,test_metadata.jsonl)"
)

RESPONSE_LISTS: tuple[str, ...] = ("scores", "rewards", "strict_rewards")
"""Per-image lists a response must hold."""

_SAFE_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("collections", "defaultdict"),
        ("builtins", "list"),
        ("builtins", "float"),
        ("builtins", "int"),
    }
)
"""The only globals a response may reference: numpy scalars (a float64 score pickles as one) and containers."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: the client talks to the URL it was given and nowhere else."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError with the 3xx code


# No proxy (an http_proxy variable must not route images elsewhere) and no redirects.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


class GenEvalServerError(RuntimeError):
    """The GenEval server could not be reached, kept failing, or answered something that is not a response."""


class _AllowlistUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"response references {module}.{name}, which is not allowed")
        return super().find_class(module, name)


def safe_unpickle(data: bytes) -> Any:
    """Unpickle ``data`` admitting only containers, numbers, strings and numpy scalars (see ``_SAFE_GLOBALS``).

    Raises:
        pickle.UnpicklingError: for anything else (e.g. a payload that would call a function).
    """
    return _AllowlistUnpickler(io.BytesIO(data)).load()


def check_server_url(url: str) -> str:
    """Return ``url`` if it is an ``http://`` or ``https://`` URL with a host.

    Raises:
        ValueError: otherwise, saying what a valid URL looks like.
    """
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"the GenEval server URL must look like http://HOST:PORT, got {url!r}")
    return url


def encode_jpeg(images: torch.Tensor) -> list[bytes]:
    """JPEG bytes (PIL's default quality, as Flow-GRPO sends) of each image of ``images`` [B, 3, H, W] in [0, 1]."""
    from PIL import Image

    encoded = []
    for pixels in to_uint8_images(images):  # [H, W, 3] uint8
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG")
        encoded.append(buffer.getvalue())
    return encoded


def _plain(value: Any) -> Any:
    """A deep copy of metadata as plain dicts and lists (read-only mappings do not pickle)."""
    return json.loads(json.dumps(value, default=dict))


@dataclass(frozen=True)
class GenEvalServerScores:
    """Scores of a batch from the server, each float32 [B] on the CPU.

    Attributes:
        partial: the partial score (``scores``): Flow-GRPO's GenEval training reward.
        correct: GenEval's correctness (``rewards``); all 0 when asked with ``only_strict``.
        strict: correctness with exact counts (``strict_rewards``).
    """

    partial: torch.Tensor
    correct: torch.Tensor
    strict: torch.Tensor


class GenEvalServerClient:
    """Scores images on a GenEval reward server (the protocol in the module docstring).

    Args:
        url: the server, e.g. ``"http://127.0.0.1:18085"``; required, there is no default host.
        timeout: seconds one request may take (connect and read) before it counts as failed.
        retries: further attempts after a failed one (connection error, timeout, HTTP 5xx).
        backoff: seconds before the first retry; doubles for each further one.
        batch_size: images per request (Flow-GRPO sends 64).

    Raises:
        ValueError: for a URL that is not http(s)://HOST[:PORT] or settings out of range.
    """

    def __init__(
        self, url: str, *, timeout: float = 120.0, retries: int = 3, backoff: float = 1.0, batch_size: int = 64
    ) -> None:
        self.url = check_server_url(url)
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if backoff < 0:
            raise ValueError(f"backoff must be >= 0 seconds, got {backoff}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.timeout, self.retries, self.backoff, self.batch_size = float(timeout), retries, float(backoff), batch_size

    def score(
        self, images: torch.Tensor, metadata: Sequence[Mapping[str, Any]], *, only_strict: bool = False
    ) -> GenEvalServerScores:
        """Score ``images`` [B, 3, H, W] in [0, 1] against their GenEval metadata (one dict per image).

        Args:
            images: float [B, 3, H, W] in [0, 1].
            metadata: B GenEval metadata records (``prompt``, ``tag``, ``include``, ...).
            only_strict: let the server skip GenEval's non-strict correctness (faster; ``correct`` is then 0).

        Raises:
            ValueError: if the batch sizes differ.
            GenEvalServerError: when the server keeps failing or answers malformed data.
        """
        if len(metadata) != images.shape[0]:
            raise ValueError(f"got {images.shape[0]} images but {len(metadata)} metadata records")
        lists: dict[str, list[float]] = {key: [] for key in RESPONSE_LISTS}
        for start in range(0, len(metadata), self.batch_size):
            stop = min(start + self.batch_size, len(metadata))
            request = {
                "images": encode_jpeg(images[start:stop]),
                "meta_datas": [_plain(record) for record in metadata[start:stop]],
                "only_strict": bool(only_strict),
            }
            response = self._check_response(safe_load(self._post(pickle.dumps(request)), self.url), stop - start)
            for key in RESPONSE_LISTS:
                lists[key] += [float(value) for value in response[key]]
        tensors = {key: torch.tensor(values, dtype=torch.float32) for key, values in lists.items()}
        return GenEvalServerScores(
            partial=tensors["scores"], correct=tensors["rewards"], strict=tensors["strict_rewards"]
        )

    def _check_response(self, response: Any, count: int) -> dict[str, Any]:
        if not isinstance(response, dict):
            raise GenEvalServerError(f"GenEval server {self.url} answered a {type(response).__name__}, not a dict")
        for key in RESPONSE_LISTS:
            values = response.get(key)
            if not isinstance(values, (list, tuple)) or len(values) != count:
                got = f"{len(values)} values" if isinstance(values, (list, tuple)) else repr(type(values).__name__)
                raise GenEvalServerError(
                    f"GenEval server {self.url} answered {key!r} with {got}, expected a list of {count}"
                )
        return response

    def _post(self, body: bytes) -> bytes:
        """POST ``body``, retrying connection errors, timeouts and HTTP 5xx; returns the 200 answer's body."""
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            request = urllib.request.Request(
                self.url, data=body, method="POST", headers={"Content-Type": "application/octet-stream"}
            )
            try:
                with _OPENER.open(request, timeout=self.timeout) as answer:
                    return answer.read()
            except urllib.error.HTTPError as error:
                detail = _last_line(error.read())
                problem = f"HTTP {error.code}" + (f": {detail}" if detail else "")
                if error.code < 500:
                    break  # the request itself is wrong: retrying will not help
            except TimeoutError:
                problem = f"no answer within {self.timeout:g} s"
            except urllib.error.URLError as error:
                reason = error.reason
                timed_out = isinstance(reason, (TimeoutError, socket.timeout))
                problem = f"no answer within {self.timeout:g} s" if timed_out else f"cannot connect ({reason})"
            except (ConnectionError, OSError) as error:
                problem = f"connection failed ({error})"
        attempts = attempt + 1
        raise GenEvalServerError(
            f"GenEval server {self.url} failed after {attempts} attempt{'s' if attempts > 1 else ''}: {problem}"
        )


def safe_load(data: bytes, url: str) -> Any:
    """:func:`safe_unpickle` a response, turning any failure into a one-line :class:`GenEvalServerError`."""
    try:
        return safe_unpickle(data)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means a malformed answer
        raise GenEvalServerError(f"GenEval server {url} answered data that is not a valid response: {error}") from None


def _last_line(body: bytes) -> str:
    lines = [line.strip() for line in body.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


class GenEvalServerReward:
    """A reward callable ``(images, prompts) -> float32 [B]`` scoring on a GenEval server.

    Args:
        client: the server client.
        metadata: prompt -> its GenEval metadata record (e.g. :attr:`creditzoo.tasks.prompts.PromptSet.metadata`
            of a prompt set read from GenEval JSONL files).
        kind: which score is the reward: "partial" (Flow-GRPO's training reward), "correct" or "strict".
    """

    KINDS: tuple[str, ...] = ("partial", "correct", "strict")

    def __init__(
        self, client: GenEvalServerClient, metadata: Mapping[str, Mapping[str, Any]], *, kind: str = "partial"
    ):
        if kind not in self.KINDS:
            raise ValueError(f"unknown GenEval server score {kind!r}; valid: {', '.join(self.KINDS)}")
        self.client, self.metadata, self.kind = client, metadata, kind

    def scores(self, images: torch.Tensor, prompts: list[str]) -> GenEvalServerScores:
        """All three scores of ``images`` [B, 3, H, W] for ``prompts``.

        Raises:
            ValueError: for a prompt without metadata.
        """
        missing = [p for p in prompts if p not in self.metadata]
        if missing:
            raise ValueError(f"no GenEval metadata for prompt {missing[0]!r} ({len(missing)} prompts lack it)")
        only_strict = self.kind != "correct"
        return self.client.score(images, [self.metadata[p] for p in prompts], only_strict=only_strict)

    def __call__(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """The chosen score, float32 [B] on the CPU."""
        return getattr(self.scores(images, prompts), self.kind)


def client_from_environment(**kwargs: Any) -> GenEvalServerClient:
    """A client for the server named by ``$CREDITZOO_GENEVAL_URL`` (``kwargs``: timeout, retries, ...).

    Raises:
        ValueError: if the variable is unset or not an http(s) URL; there is no default host.
    """
    url = os.environ.get(URL_ENV, "").strip()
    if not url:
        raise ValueError(
            f"set {URL_ENV} to your GenEval reward server, e.g. http://127.0.0.1:18085 (there is no default host: "
            "the protocol uses pickle, so name only a server you trust)"
        )
    return GenEvalServerClient(url, **kwargs)


class UnboundGenEvalServerReward:
    """A task's GenEval-server reward before it knows its prompts' metadata.

    :func:`creditzoo.tasks.prompts.with_prompt_set` (``--prompts`` on the command line) calls
    :meth:`for_prompts`, which returns the working :class:`GenEvalServerReward`; called unbound, it fails
    saying so.

    Args:
        kind: "partial", "correct" or "strict" (see :class:`GenEvalServerReward`).
    """

    def __init__(self, kind: str) -> None:
        if kind not in GenEvalServerReward.KINDS:
            raise ValueError(f"unknown GenEval server score {kind!r}; valid: {', '.join(GenEvalServerReward.KINDS)}")
        self.kind = kind

    def for_prompts(self, prompts: PromptSet) -> GenEvalServerReward:
        """The reward bound to ``prompts``' metadata, on the server of ``$CREDITZOO_GENEVAL_URL``.

        Raises:
            ValueError: the prompts carry no GenEval metadata (plain text), or the URL is not set.
        """
        if not prompts.metadata:
            raise ValueError(NEEDS_METADATA)
        return GenEvalServerReward(client_from_environment(), prompts.metadata, kind=self.kind)

    def __call__(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """Always fails: the reward needs its prompts' metadata first (see :meth:`for_prompts`)."""
        raise ValueError(NEEDS_METADATA)


PARTIAL = UnboundGenEvalServerReward("partial")
"""Flow-GRPO's GenEval training reward (the server's partial score), once bound to a prompt set."""
CORRECT = UnboundGenEvalServerReward("correct")
"""GenEval's correctness (0/1), once bound."""
STRICT = UnboundGenEvalServerReward("strict")
"""Correctness with exact counts (0/1), once bound."""


__all__ = [
    "GenEvalServerClient",
    "GenEvalServerError",
    "GenEvalServerReward",
    "GenEvalServerScores",
    "UnboundGenEvalServerReward",
    "client_from_environment",
    "check_server_url",
    "encode_jpeg",
    "safe_unpickle",
]
