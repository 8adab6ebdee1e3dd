"""SDXL's text conditioning, computed as diffusers' StableDiffusionXLPipeline computes it
(its encode_prompt and _get_add_time_ids, diffusers 0.42).

SDXL's UNet takes three things from the text and the request besides the latents:
  - per-token embeddings (P, L, D1 + D2): the penultimate hidden states of both text
    encoders, side by side (L = 77 tokens; D1 + D2 = 768 + 1280 = 2048 in SDXL base);
  - a pooled embedding (P, E): the second encoder's projection of its end-of-text token
    (E = 1280), as added_cond_kwargs["text_embeds"];
  - 6 size numbers (original height and width, crop top and left, target height and
    width), as added_cond_kwargs["time_ids"].
The negative side is the same for every prompt: the negative prompt's embeddings, or, when
the negative prompt is empty and the checkpoint says force_zeros_for_empty_prompt (SDXL
base does), zeros (diffusers' negative_prompt=None).
"""

from dataclasses import dataclass

import torch
from transformers import CLIPTokenizer

from animate.memory import WHOLE, StageBatches
from animate.text.clip import prompt_names, tokenize
from animate.weights import Components


@dataclass
class SdxlText:
    """The text conditioning of P prompts and of the negative prompt (shared by all)."""

    embeddings: torch.Tensor  # (P, L, D1 + D2)
    pooled: torch.Tensor  # (P, E)
    negative_embeddings: torch.Tensor  # (1, L, D1 + D2)
    negative_pooled: torch.Tensor  # (1, E)


def padded_ids(tokenizer: CLIPTokenizer, texts: list[str]) -> torch.Tensor:
    """Token ids (len(texts), L) padded and truncated to L = tokenizer.model_max_length,
    without text.tokenize's message for each cut text."""
    return tokenizer(
        texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids


def encode_sdxl_prompts(
    components: Components, prompts: list[str], negative_prompt: str, batches: StageBatches | None = None
) -> SdxlText:
    """Both encoders' embeddings of the P prompts and of negative_prompt, in one encoder call
    each (the negative in the same batch, unless it is zeros), on components.device in the
    encoders' dtype. No attention mask, as SDXL was trained. `batches` (stage "text", all
    texts by default) splits the calls when they run out of memory."""
    zero_negative = negative_prompt == "" and components.force_zeros_for_empty_prompt
    texts = prompts if zero_negative else [*prompts, negative_prompt]
    # Cut texts are reported once, by the first tokenizer (both have SDXL's one vocabulary).
    names = [*prompt_names(len(prompts)), "The negative prompt"][: len(texts)]
    ids_1 = tokenize(components.tokenizer, texts, names).to(components.device)
    ids_2 = padded_ids(components.tokenizer_2, texts).to(components.device)

    def encode(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-token embeddings (B, L, D1 + D2), pooled (B, E)) of texts start .. stop - 1."""
        output_1 = components.text_encoder(ids_1[start:stop], output_hidden_states=True)
        output_2 = components.text_encoder_2(ids_2[start:stop], output_hidden_states=True)
        # The penultimate layer's states, before the final layer norm, as SDXL was trained.
        return torch.cat([output_1.hidden_states[-2], output_2.hidden_states[-2]], dim=-1), output_2.text_embeds

    batches = StageBatches("text", WHOLE) if batches is None else batches
    parts = [part for _, _, part in batches.over(len(texts), encode)]
    embeddings = torch.cat([part[0] for part in parts])
    pooled = torch.cat([part[1] for part in parts])
    count = len(prompts)
    if zero_negative:
        negative_embeddings = torch.zeros_like(embeddings[:1])
        negative_pooled = torch.zeros_like(pooled[:1])
    else:
        negative_embeddings, negative_pooled = embeddings[count:], pooled[count:]
    return SdxlText(embeddings[:count], pooled[:count], negative_embeddings, negative_pooled)


def add_time_ids(height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    """SDXL's size conditioning (1, 6) for an image of height x width: original size and
    target size both the requested size, crop corner (0, 0), as diffusers' defaults. The
    same for the conditional and the unconditional half of guidance."""
    return torch.tensor([[height, width, 0, 0, height, width]], dtype=dtype)
