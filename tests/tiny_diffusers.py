"""Tiny SD3 and FLUX diffusers pipelines built in memory: random weights, tiny configs, local tokenizers.

diffusers' own test fixtures download their tokenizers from the hub, which cannot be reached here, so the
tokenizers are built from a character-level vocabulary: a CLIP BPE tokenizer without merges (every
character a token, word ends marked with ``</w>``) and a T5 unigram tokenizer over the same characters.
Sizes follow diffusers' pipeline tests (1-layer transformers, a one-block VAE with scale factor 1).
"""

from __future__ import annotations

import string

import torch

CHARACTERS = list(string.ascii_lowercase + string.digits) + [".", ",", '"', "'", "-"]
CLIP_MAX_LENGTH = 16
T5_MAX_LENGTH = 16


def clip_tokenizer():
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in CHARACTERS:
        vocab[char] = len(vocab)
        vocab[char + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=CLIP_MAX_LENGTH)


def t5_tokenizer():
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -1.0)]
    pieces += [(char, -1.0) for char in CHARACTERS] + [("\u2581" + char, -2.0) for char in CHARACTERS]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=T5_MAX_LENGTH)


def clip_encoder(with_projection: bool, seed: int):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    config = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=32,
        intermediate_size=37,
        layer_norm_eps=1e-5,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=2 + 2 * len(CHARACTERS),
        max_position_embeddings=CLIP_MAX_LENGTH,
        hidden_act="gelu",
        projection_dim=32,
    )
    model = CLIPTextModelWithProjection(config) if with_projection else CLIPTextModel(config)
    return model.eval()


def t5_encoder(d_model: int, seed: int):
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=4 + 2 * len(CHARACTERS),
        d_model=d_model,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return T5EncoderModel(config).eval()


def tiny_vae(latent_channels: int, seed: int):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(4,),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=1,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    ).eval()


def tiny_sd3_pipeline(seed: int = 0):
    """A StableDiffusion3Pipeline with SD3.5's structure at toy size (latents [4, H, W] for H x W images)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(
        sample_size=32,
        patch_size=1,
        in_channels=4,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=64,
        pooled_projection_dim=64,
        out_channels=4,
        dual_attention_layers=(0,),  # SD3.5-Medium's MMDiT-X attention (attn2) in the first block
    ).eval()
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=tiny_vae(4, seed + 1),
        text_encoder=clip_encoder(True, seed + 2),
        tokenizer=clip_tokenizer(),
        text_encoder_2=clip_encoder(True, seed + 3),
        tokenizer_2=clip_tokenizer(),
        text_encoder_3=t5_encoder(64, seed + 4),
        tokenizer_3=t5_tokenizer(),
    )


def tiny_flux_pipeline(seed: int = 0):
    """A FluxPipeline with FLUX.1-dev's structure (guidance embedding, dynamic shift) at toy size."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=True,
        axes_dims_rope=(4, 4, 8),
    ).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )
    return FluxPipeline(
        transformer=transformer,
        scheduler=scheduler,
        vae=tiny_vae(1, seed + 1),
        text_encoder=clip_encoder(False, seed + 2),
        tokenizer=clip_tokenizer(),
        text_encoder_2=t5_encoder(32, seed + 3),
        tokenizer_2=t5_tokenizer(),
    )
