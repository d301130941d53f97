"""The embedded toy model: a small pixel-space conditional flow-matching UNet with its own text encoder.

It implements :class:`creditzoo.models.base.FlowModel` on 32x32 RGB images whose latents are the pixels
scaled to [-1, 1]. Training is rectified flow (Liu et al. 2022, "Flow Straight and Fast", arXiv 2209.03003;
the SD3 convention ``x_sigma = (1 - sigma) x0 + sigma * noise``, ``v = noise - x0``), see
:mod:`creditzoo.pretrain`.

Architecture (sizes from :class:`ToyModelConfig`):

- text: a word-level tokenizer over a fixed vocabulary with real ``<pad>``, ``<null>`` (the unconditional
  prompt, so attention never sees an all-padding row) and ``<unk>``-free lookup (unknown words raise), then
  a small pre-norm transformer encoder; its masked mean feeds FiLM, its tokens feed cross-attention;
- image: ``pixel_unshuffle(2)`` (3x32x32 -> 12x16x16), a UNet 16 -> 8 -> 4 with FiLM (AdaGN) residual
  blocks conditioned on the noise level and the pooled prompt, cross-attention to the prompt tokens at
  8x8 and 4x4 (with learned 2-D position embeddings, so "left of" has something to attend with), and
  ``pixel_shuffle(2)`` back to 3x32x32.

Every adaptable layer is an ``nn.Linear`` or ``nn.Conv2d`` with a distinct name; :data:`LORA_TARGET_MODULES`
lists them for peft.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from creditzoo.messages import ELLIPSIS, shown
from creditzoo.models.base import Conditioning, FlowModel

PAD_TOKEN = "<pad>"
NULL_TOKEN = "<null>"
SPECIAL_TOKENS = (PAD_TOKEN, NULL_TOKEN)

DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "assets" / "toy_geneval.safetensors"

LORA_TARGET_MODULES: list[str] = [
    # text encoder
    "to_qkv",
    "to_out",
    "ff_in",
    "ff_out",
    # noise-level / prompt embedding and FiLM projections
    "time_in",
    "time_out",
    "text_pool",
    "film",
    # UNet convolutions
    "conv_in",
    "conv1",
    "conv2",
    "skip",
    "down",
    "up",
    # cross-attention
    "to_q",
    "to_kv",
]
"""Module-name suffixes (peft ``target_modules``) covering every Linear/Conv2d worth adapting.

Only ``conv_out`` (the zero-initialised output layer) and the embedding tables are left out.
"""

_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


def tokenize_words(prompt: str) -> list[str]:
    """Split a prompt into lower-case words (punctuation dropped)."""
    return _WORD.findall(prompt.lower())


def _word_list(words: tuple[str, ...], limit: int = 40) -> str:
    """The vocabulary for an error message: whole up to ``limit`` words, else its first ``limit`` and a count."""
    shown_words = ", ".join(words[:limit])
    return shown_words if len(words) <= limit else f"{shown_words}, {ELLIPSIS} ({len(words)} words)"


@dataclass(frozen=True)
class ToyModelConfig:
    """Sizes of the toy flow model.

    Attributes:
        vocabulary: every word a prompt may use (lower case); ids follow the order given, after the specials.
        max_tokens: prompts are padded (and must fit) to this many word tokens.
        image_size: side of the square RGB image (must be divisible by 8).
        channels: UNet widths at 1/2, 1/4 and 1/8 of ``image_size`` (after pixel_unshuffle(2)).
        text_dim: width of the text encoder and of the prompt tokens fed to cross-attention.
        text_layers: number of transformer layers in the text encoder.
        heads: attention heads (text self-attention and cross-attention).
        emb_dim: width of the noise-level + pooled-prompt embedding that drives FiLM.
        groups: GroupNorm groups (must divide every entry of ``channels``).
    """

    vocabulary: tuple[str, ...]
    max_tokens: int = 16
    image_size: int = 32
    channels: tuple[int, int, int] = (24, 48, 96)
    text_dim: int = 96
    text_layers: int = 2
    heads: int = 4
    emb_dim: int = 128
    groups: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "vocabulary", tuple(self.vocabulary))
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if not self.vocabulary:
            raise ValueError("vocabulary must not be empty")
        if len(set(self.vocabulary)) != len(self.vocabulary):
            raise ValueError("vocabulary has duplicate words")
        bad = [w for w in self.vocabulary if tokenize_words(w) != [w]]
        if bad:
            raise ValueError(f"vocabulary words must be single lower-case words, got {bad[:5]}")
        if set(self.vocabulary) & set(SPECIAL_TOKENS):
            raise ValueError(f"vocabulary must not contain the special tokens {SPECIAL_TOKENS}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.image_size < 8 or self.image_size % 8:
            raise ValueError(f"image_size must be a positive multiple of 8, got {self.image_size}")
        if len(self.channels) != 3 or min(self.channels) < 1:
            raise ValueError(f"channels must be three positive widths, got {self.channels}")
        if any(c % self.groups for c in self.channels):
            raise ValueError(f"groups={self.groups} must divide every channel width {self.channels}")
        attention_widths = {"text_dim": self.text_dim, "channels[1]": self.channels[1], "channels[2]": self.channels[2]}
        for name, width in attention_widths.items():
            if width % self.heads:
                raise ValueError(f"heads={self.heads} must divide {name}={width}")
        if self.text_layers < 0 or self.emb_dim < 1:
            raise ValueError("text_layers must be >= 0 and emb_dim >= 1")

    @property
    def vocab_size(self) -> int:
        """Number of token ids, specials included."""
        return len(SPECIAL_TOKENS) + len(self.vocabulary)

    def to_json(self) -> str:
        """Serialise (for safetensors metadata)."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ToyModelConfig:
        """Inverse of :meth:`to_json`."""
        data = json.loads(text)
        data["vocabulary"] = tuple(data["vocabulary"])
        data["channels"] = tuple(data["channels"])
        return cls(**data)


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, mask: torch.Tensor | None):
    """Multi-head attention. q [B, Nq, D], k/v [B, Nk, D], mask bool [B, Nk] (True = attend)."""
    b, nq, d = q.shape
    q, k, v = (t.reshape(b, t.shape[1], heads, d // heads).transpose(1, 2) for t in (q, k, v))
    attn_mask = None if mask is None else mask[:, None, None, :]  # [B, 1, 1, Nk]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # [B, H, Nq, D/H]
    return out.transpose(1, 2).reshape(b, nq, d)


class TextLayer(nn.Module):
    """Pre-norm transformer layer: masked self-attention and an MLP."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, 3 * dim)
        self.to_out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff_in = nn.Linear(dim, 2 * dim)
        self.ff_out = nn.Linear(2 * dim, dim)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Tokens h [B, L, D], mask bool [B, L] -> [B, L, D]."""
        q, k, v = self.to_qkv(self.norm1(h)).chunk(3, dim=-1)
        h = h + self.to_out(_attention(q, k, v, self.heads, mask))
        return h + self.ff_out(F.gelu(self.ff_in(self.norm2(h))))


class ResBlock(nn.Module):
    """Residual block with FiLM (adaptive GroupNorm) conditioning on the embedding."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups if in_ch % groups == 0 else 1, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch, affine=False)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Features x [B, C_in, H, W], embedding emb [B, E] -> [B, C_out, H, W]."""
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return h + (x if self.skip is None else self.skip(x))


class CrossAttention(nn.Module):
    """Image features (with learned 2-D positions) attend to the prompt tokens."""

    def __init__(self, channels: int, text_dim: int, heads: int, side: int, groups: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.pos = nn.Parameter(torch.randn(1, side * side, channels) * 0.02)
        self.to_q = nn.Linear(channels, channels)
        self.to_kv = nn.Linear(text_dim, 2 * channels)
        self.to_out = nn.Linear(channels, channels)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def forward(self, x: torch.Tensor, text: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Features x [B, C, H, W], prompt tokens text [B, L, D], mask bool [B, L] -> [B, C, H, W]."""
        b, c, height, width = x.shape
        h = self.norm(x).flatten(2).transpose(1, 2) + self.pos  # [B, HW, C]
        k, v = self.to_kv(text).chunk(2, dim=-1)
        out = self.to_out(_attention(self.to_q(h), k, v, self.heads, mask))  # [B, HW, C]
        return x + out.transpose(1, 2).reshape(b, c, height, width)


class Downsample(nn.Module):
    """Stride-2 3x3 convolution."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.down = nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C_in, H, W] -> [B, C_out, H/2, W/2]."""
        return self.down(x)


class Upsample(nn.Module):
    """A 3x3 convolution at the low resolution (4x cheaper than after upsampling), then nearest x2."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.up = nn.Conv2d(in_ch, out_ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C_in, H, W] -> [B, C_out, 2H, 2W]."""
        return F.interpolate(self.up(x), scale_factor=2.0, mode="nearest")


def _sigma_features(sigma: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of sigma * 1000, [B] -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=sigma.device) / half)
    angles = sigma.float()[:, None] * 1000.0 * freqs[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


class ToyFlowModel(FlowModel):
    """Pixel-space conditional flow-matching model implementing :class:`~creditzoo.models.base.FlowModel`.

    Latents are images scaled to [-1, 1], shape [B, 3, image_size, image_size]; the model predicts the
    rectified-flow velocity ``noise - x0``.
    """

    lora_target_modules: tuple[str, ...] = tuple(LORA_TARGET_MODULES)
    """Layer names a LoRA adapter may target (:attr:`~creditzoo.models.base.FlowModel.lora_target_modules`)."""

    def __init__(self, config: ToyModelConfig) -> None:
        super().__init__()
        self.config = config
        self.sample_shape: tuple[int, ...] = (3, config.image_size, config.image_size)
        self._word_ids = {word: i + len(SPECIAL_TOKENS) for i, word in enumerate(config.vocabulary)}
        c0, c1, c2 = config.channels
        side = config.image_size // 2
        d, e, g = config.text_dim, config.emb_dim, config.groups

        self.token_emb = nn.Embedding(config.vocab_size, d)
        self.token_pos = nn.Parameter(torch.randn(1, config.max_tokens, d) * 0.02)
        self.text_layers = nn.ModuleList(TextLayer(d, config.heads) for _ in range(config.text_layers))
        self.text_norm = nn.LayerNorm(d)
        self.text_pool = nn.Linear(d, e)
        self.time_in = nn.Linear(e, e)
        self.time_out = nn.Linear(e, e)

        self.conv_in = nn.Conv2d(12, c0, 3, padding=1)
        self.enc0 = ResBlock(c0, c0, e, g)
        self.down0 = Downsample(c0, c1)
        self.enc1 = ResBlock(c1, c1, e, g)
        self.attn1 = CrossAttention(c1, d, config.heads, side // 2, g)
        self.down1 = Downsample(c1, c2)
        self.mid0 = ResBlock(c2, c2, e, g)
        self.attn_mid = CrossAttention(c2, d, config.heads, side // 4, g)
        self.mid1 = ResBlock(c2, c2, e, g)
        self.up1 = Upsample(c2, c1)
        self.dec1 = ResBlock(2 * c1, c1, e, g)
        self.attn_dec1 = CrossAttention(c1, d, config.heads, side // 2, g)
        self.up0 = Upsample(c1, c0)
        self.dec0 = ResBlock(2 * c0, c0, e, g)
        self.norm_out = nn.GroupNorm(g, c0)
        self.conv_out = nn.Conv2d(c0, 12, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    # --- text ---------------------------------------------------------------------------------------

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids int64 [B, max_tokens] and attention mask bool [B, max_tokens].

        The empty prompt "" maps to the ``<null>`` token (the unconditional prompt for guidance).

        Raises:
            ValueError: for a word outside the vocabulary or a prompt longer than ``max_tokens`` words.
        """
        length = self.config.max_tokens
        ids = torch.zeros(len(prompts), length, dtype=torch.long)  # [B, L], 0 = <pad>
        for row, prompt in enumerate(prompts):
            words = tokenize_words(prompt)
            if len(words) > length:
                raise ValueError(f"prompt has {len(words)} words, more than max_tokens={length}: {shown(prompt)}")
            unknown = [w for w in words if w not in self._word_ids]
            if unknown:
                raise ValueError(
                    f"words not in the model's vocabulary: {shown(unknown)} (prompt {shown(prompt)}); "
                    f"valid: {_word_list(self.config.vocabulary)}"
                )
            token_ids = [self._word_ids[w] for w in words] or [SPECIAL_TOKENS.index(NULL_TOKEN)]
            ids[row, : len(token_ids)] = torch.tensor(token_ids)
        return ids, ids != 0

    def check_prompts(self, prompts: list[str]) -> None:
        """Raise ``ValueError`` for a prompt :meth:`tokenize` refuses (an unknown word, too many words)."""
        self.tokenize(list(prompts))

    def encode_prompts(self, prompts: list[str]) -> Conditioning:
        """Tokenize B prompts: {"input_ids": int64 [B, L], "attention_mask": bool [B, L]}.

        The text encoder itself runs inside :meth:`velocity`, so LoRA on it is trained too.
        """
        ids, mask = self.tokenize(list(prompts))
        device = self.token_pos.device
        return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}

    def null_conditioning(self, batch_size: int) -> Conditioning:
        """Conditioning of the unconditional prompt, repeated ``batch_size`` times."""
        return self.encode_prompts([""] * batch_size)

    def with_text_features(self, cond: Conditioning) -> Conditioning:
        """``cond`` plus the text encoder's output for its rows, so that :meth:`velocity` skips the encoder.

        For calls without gradient under the weights of this call (an episode's sampling: the weights do not change
        between reset and the last step). The encoder's output for a row does not depend on the other rows of its
        batch on the CPU (checked bit for bit in the tests), so velocities are the same numbers as without the cache.
        The learner's update keeps the plain conditioning: it trains the text encoder's LoRA through it.

        Returns:
            ``cond`` with ``text_tokens`` [B, L, D] and ``text_pooled`` [B, D] added (batch-first, like every
            conditioning tensor, so :func:`~creditzoo.models.base.select_conditioning` gathers them too).
        """
        text, _, pooled = self._text(cond)
        return {**cond, "text_tokens": text, "text_pooled": pooled}

    def _text(self, cond: Conditioning) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if "text_tokens" in cond:  # precomputed by with_text_features
            return cond["text_tokens"], cond["attention_mask"].bool(), cond["text_pooled"]
        ids, mask = cond["input_ids"], cond["attention_mask"].bool()  # [B, L]
        h = self.token_emb(ids) + self.token_pos[:, : ids.shape[1]]  # [B, L, D]
        for layer in self.text_layers:
            h = layer(h, mask)
        h = self.text_norm(h)
        weights = mask.to(h.dtype)[..., None]  # [B, L, 1]
        pooled = (h * weights).sum(1) / weights.sum(1).clamp_min(1.0)  # [B, D]
        return h, mask, pooled

    # --- FlowModel ----------------------------------------------------------------------------------

    def forward(self, latents: torch.Tensor, sigma: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """Conditional velocity without guidance: latents [B, 3, S, S], sigma [B] -> [B, 3, S, S]."""
        text, mask, pooled = self._text(cond)
        e = self.config.emb_dim
        emb = self.time_out(F.silu(self.time_in(_sigma_features(sigma, e).to(latents.dtype))))
        emb = F.silu(emb + self.text_pool(pooled))  # [B, E]

        h0 = self.enc0(self.conv_in(F.pixel_unshuffle(latents, 2)), emb)  # [B, c0, S/2, S/2]
        h1 = self.attn1(self.enc1(self.down0(h0), emb), text, mask)  # [B, c1, S/4, S/4]
        h = self.mid1(self.attn_mid(self.mid0(self.down1(h1), emb), text, mask), emb)  # [B, c2, S/8, S/8]
        h = self.dec1(torch.cat([self.up1(h), h1], dim=1), emb)
        h = self.attn_dec1(h, text, mask)  # [B, c1, S/4, S/4]
        h = self.dec0(torch.cat([self.up0(h), h0], dim=1), emb)  # [B, c0, S/2, S/2]
        return F.pixel_shuffle(self.conv_out(F.silu(self.norm_out(h))), 2)

    def velocity(
        self,
        latents: torch.Tensor,
        sigma: torch.Tensor | float,
        cond: Conditioning,
        *,
        guidance_scale: float = 1.0,
    ) -> torch.Tensor:
        """Predict the velocity at ``latents`` [B, 3, S, S] and noise levels ``sigma`` [B] (or a float).

        With ``guidance_scale != 1`` the conditional and unconditional predictions come from one batched
        forward of size 2B and are combined as ``v_u + guidance_scale * (v_c - v_u)``.

        Returns:
            v [B, 3, S, S] in the dtype of ``latents``.
        """
        if tuple(latents.shape[1:]) != self.sample_shape:
            raise ValueError(f"latents must have shape [B, {self.sample_shape}], got {tuple(latents.shape)}")
        batch = latents.shape[0]
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=latents.device)
        if sigma.ndim == 0:
            sigma = sigma.expand(batch)
        if sigma.shape != (batch,):
            raise ValueError(f"sigma must be a float or have shape [{batch}], got {tuple(sigma.shape)}")
        if guidance_scale == 1.0:
            return self(latents, sigma, cond).to(latents.dtype)
        null = self.null_conditioning(batch)
        both = {key: torch.cat([cond[key], null[key].to(cond[key].device)]) for key in null}
        v = self(torch.cat([latents, latents]), torch.cat([sigma, sigma]), both)  # [2B, 3, S, S]
        v_cond, v_uncond = v.chunk(2)
        return (v_uncond + guidance_scale * (v_cond - v_uncond)).to(latents.dtype)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Pixel latents in [-1, 1] [B, 3, S, S] -> float images in [0, 1] [B, 3, S, S]."""
        return ((latents.float() + 1.0) / 2.0).clamp(0.0, 1.0)

    @staticmethod
    def images_to_latents(images: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`decode` for images in [0, 1]: ``2 * images - 1``."""
        return images * 2.0 - 1.0


def save_toy_model(model: ToyFlowModel, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write the weights as safetensors with the config (and any extra strings) in the metadata."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={**(metadata or {}), "config": model.config.to_json()})


def load_toy_model(path: str | Path) -> ToyFlowModel:
    """Load a model written by :func:`save_toy_model`, in eval mode."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no toy model weights at {path}")
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if "config" not in metadata:
        raise ValueError(f"{path} has no 'config' in its safetensors metadata; was it written by save_toy_model?")
    model = ToyFlowModel(ToyModelConfig.from_json(metadata["config"]))
    model.load_state_dict(load_file(str(path)))
    return model.eval()


def load_geneval_model(path: str | None = None) -> ToyFlowModel:
    """The shipped GenEval-style toy model (``creditzoo/assets/toy_geneval.safetensors``), in eval mode."""
    return load_toy_model(DEFAULT_WEIGHTS if path is None else path)


def load_toy(path: str | None = None, *, device: torch.device, dtype: torch.dtype = torch.float32) -> ToyFlowModel:
    """The ``toy`` / ``toy:PATH`` entry of :data:`creditzoo.models.MODELS`: the shipped or a saved toy, on ``device``.

    Raises:
        ModelError: for a dtype other than float32 (the toy's layers are not written for reduced precision) or a
            path with no toy weights.
    """
    from creditzoo.models import ModelError

    if dtype != torch.float32:
        raise ModelError(f"the toy model runs in float32 only, got dtype {dtype}; valid: float32")
    try:
        model = load_geneval_model(path)
    except FileNotFoundError as error:
        raise ModelError(f"{error}; valid forms: toy, toy:PATH") from error
    return model.to(device)
