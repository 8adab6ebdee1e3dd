"""Encode each prompt once with the CLIP text encoder (docs/behaviour.md, "The walk")."""

import json

import torch
from transformers import CLIPTextModel, CLIPTokenizer

from animate.memory import WHOLE, StageBatches

# How much of the cut end of a long prompt the log quotes.
CUT_EXCERPT_CHARS = 80
# Said after the count of a tokenizer without merges, whose counts are far above CLIP's.
CHARACTER_COUNT_NOTE = " (the tiny test tokenizer counts each character; CLIP's about one token per word)"


def prompt_names(count: int) -> list[str]:
    """What the log calls the walk's prompts: "Prompt 1", "Prompt 2", ..."""
    return [f"Prompt {number}" for number in range(1, count + 1)]


def tokenize(tokenizer: CLIPTokenizer, prompts: list[str], names: list[str] | None = None) -> torch.Tensor:
    """Token ids (len(prompts), L) padded and truncated to L = tokenizer.model_max_length.

    Prints which prompts were cut and where the dropped text starts, since the end of a
    long prompt has no effect on the image. `names` are what those lines call the prompts,
    by default "Prompt 1", "Prompt 2", ...
    """
    if names is None:
        names = prompt_names(len(prompts))
    limit = tokenizer.model_max_length
    ids = tokenizer(
        prompts, padding="max_length", max_length=limit, truncation=True, return_tensors="pt"
    ).input_ids
    # verbose=False: measuring a long prompt's length is not an error, and without it
    # transformers warns of "indexing errors" beside the message below.
    full = tokenizer(prompts, padding=False, truncation=False, verbose=False).input_ids
    for name, prompt_ids in zip(names, full, strict=True):
        if len(prompt_ids) > limit:
            # Everything between the kept tokens and the closing end-of-text token is lost.
            cut = prompt_ids[limit - 1 : -1]
            note = CHARACTER_COUNT_NOTE if counts_characters(tokenizer) else ""
            print(
                f"{name} is {len(prompt_ids)} tokens long and the text encoder reads "
                f"{limit}, so its last {len(cut)} tokens were cut, from: {cut_excerpt(tokenizer, cut)}{note}",
                flush=True,
            )
    return ids


def counts_characters(tokenizer: CLIPTokenizer) -> bool:
    """True for a BPE tokenizer without merges, such as the tiny test weights' (animate.tiny):
    it makes a token of every character, where CLIP's makes one of most words, so the
    counts it gives for a prompt are several times CLIP's."""
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    return model.get("type") == "BPE" and not model.get("merges")


def cut_excerpt(tokenizer: CLIPTokenizer, cut_ids: list[int]) -> str:
    """The start of the cut text, quoted; at most CUT_EXCERPT_CHARS characters, so that a
    prompt of many thousand characters does not flood the log."""
    text = tokenizer.decode(cut_ids[:CUT_EXCERPT_CHARS])
    if len(text) > CUT_EXCERPT_CHARS or len(cut_ids) > CUT_EXCERPT_CHARS:
        return f"{text[:CUT_EXCERPT_CHARS]!r}..."
    return repr(text)


def encode_prompts(
    tokenizer: CLIPTokenizer,
    text_encoder: CLIPTextModel,
    prompts: list[str],
    negative_prompt: str = "",
    batches: StageBatches | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings of the P prompts, (P, L, D), and of the negative prompt, (1, L, D): the
    unconditional half of guidance, the empty prompt's by default.

    All P+1 texts go through the encoder in one call, on the encoder's device and dtype,
    as diffusers does: the last hidden state, no attention mask (SD 1.x was trained so).
    `batches` (stage "text", all texts by default) splits the call when it runs out of memory.
    """
    names = [*prompt_names(len(prompts)), "The negative prompt"]
    ids = tokenize(tokenizer, [*prompts, negative_prompt], names).to(text_encoder.device)
    batches = StageBatches("text", WHOLE) if batches is None else batches

    def encode(start: int, stop: int) -> torch.Tensor:
        return text_encoder(ids[start:stop], return_dict=False)[0]

    hidden = torch.cat([states for _, _, states in batches.over(len(ids), encode)])
    return hidden[:-1], hidden[-1:]
