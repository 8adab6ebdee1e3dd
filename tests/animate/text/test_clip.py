import json
import re

import torch
from transformers import CLIPTokenizer

from animate.text.clip import encode_prompts, tokenize


def test_each_prompt_encoded_once_with_the_empty_prompt(components):
    prompts = ["a cat", "a dog", "a cat"]
    embeddings, empty = encode_prompts(components.tokenizer, components.text_encoder, prompts)
    hidden = components.text_encoder.config.hidden_size
    assert embeddings.shape == (3, 77, hidden)
    assert empty.shape == (1, 77, hidden)
    torch.testing.assert_close(embeddings[0], embeddings[2])
    assert not torch.allclose(embeddings[0], embeddings[1])
    alone, _ = encode_prompts(components.tokenizer, components.text_encoder, ["a dog"])
    torch.testing.assert_close(alone[0], embeddings[1], rtol=1e-5, atol=1e-5)
    ids = components.tokenizer([""], padding="max_length", max_length=77, return_tensors="pt").input_ids
    torch.testing.assert_close(empty, components.text_encoder(ids)[0], rtol=1e-5, atol=1e-5)


def test_the_negative_prompt_takes_the_empty_prompts_place(components):
    prompts = ["a cat", "a dog"]
    embeddings, empty = encode_prompts(components.tokenizer, components.text_encoder, prompts)
    same, also_empty = encode_prompts(components.tokenizer, components.text_encoder, prompts, "")
    assert torch.equal(same, embeddings) and torch.equal(also_empty, empty)  # "" is exactly as before
    with_negative, negative = encode_prompts(components.tokenizer, components.text_encoder, prompts, "blurry, dark")
    assert negative.shape == empty.shape and not torch.allclose(negative, empty)
    torch.testing.assert_close(with_negative, embeddings)
    ids = components.tokenizer(["blurry, dark"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    torch.testing.assert_close(negative, components.text_encoder(ids)[0], rtol=1e-5, atol=1e-5)


def test_a_long_negative_prompt_is_truncated_and_the_log_names_it(components, capsys):
    _, negative = encode_prompts(components.tokenizer, components.text_encoder, ["a cat", "a dog"], "x " * 100)
    lines = [line for line in capsys.readouterr().out.splitlines() if "cut" in line]
    assert len(lines) == 1
    assert lines[0].startswith("The negative prompt is 102 tokens long and the text encoder reads 77, so its last 25")
    _, longer = encode_prompts(components.tokenizer, components.text_encoder, ["a cat", "a dog"], "x " * 200)
    torch.testing.assert_close(longer, negative)


def test_long_prompt_is_truncated_and_the_log_says_which(components, capsys):
    long_prompt = "x " * 100  # 100 words: far more than 77 tokens
    embeddings, _ = encode_prompts(components.tokenizer, components.text_encoder, ["short", long_prompt.strip()])
    out = capsys.readouterr().out
    assert "Prompt 2 is" in out and "cut" in out
    assert "Prompt 1" not in out
    assert embeddings.shape[1] == 77
    # Everything past the first 75 words is dropped, so more words change nothing.
    longer, _ = encode_prompts(components.tokenizer, components.text_encoder, ["short", (long_prompt * 2).strip()])
    torch.testing.assert_close(longer, embeddings)


def test_short_prompts_log_nothing(components, capsys):
    encode_prompts(components.tokenizer, components.text_encoder, ["a cat", "a dog"])
    assert "cut" not in capsys.readouterr().out


def test_cut_of_a_very_long_prompt_is_quoted_briefly(components, capsys):
    from animate.text.clip import CHARACTER_COUNT_NOTE, CUT_EXCERPT_CHARS

    encode_prompts(components.tokenizer, components.text_encoder, ["a red apple " * 800])
    lines = [line for line in capsys.readouterr().out.splitlines() if "cut" in line]
    assert len(lines) == 1
    assert re.fullmatch(
        r"Prompt 1 is \d+ tokens long .* so its last \d+ tokens were cut, from: '[a-z ]+'\.\.\."
        + re.escape(CHARACTER_COUNT_NOTE),
        lines[0],
    )
    assert len(lines[0]) < 150 + CUT_EXCERPT_CHARS + len(CHARACTER_COUNT_NOTE)


def test_long_prompt_gives_only_the_projects_message(tiny_weights, capsys, caplog):
    # A fresh tokenizer: transformers warns once per tokenizer, and the shared one may
    # have been used with a long prompt by an earlier test. transformers logs through its
    # own handler, which pytest's caplog sees.
    tokenizer = CLIPTokenizer.from_pretrained(tiny_weights / "stable-diffusion" / "tokenizer")
    caplog.clear()
    tokenize(tokenizer, ["x " * 100])
    assert "Prompt 1 is 102 tokens long" in capsys.readouterr().out
    assert not [record.getMessage() for record in caplog.records if "sequence length" in record.getMessage()]


def test_only_a_tokenizer_without_word_pieces_says_it_counts_characters(tiny_weights, tmp_path, capsys):
    """The tiny tokenizer has no merges; one with merges (CLIP's has 48,894) says nothing more."""
    from animate.text.clip import CHARACTER_COUNT_NOTE

    folder = tiny_weights / "stable-diffusion" / "tokenizer"
    tokenize(CLIPTokenizer.from_pretrained(folder), ["x " * 100])
    assert capsys.readouterr().out.rstrip("\n").endswith(CHARACTER_COUNT_NOTE)
    merged = tmp_path / "tokenizer"
    merged.mkdir()
    vocab = json.loads((folder / "vocab.json").read_text())
    vocab["xy</w>"] = len(vocab)
    (merged / "vocab.json").write_text(json.dumps(vocab))
    (merged / "merges.txt").write_text("#version: 0.2\nx y</w>\n")
    (merged / "tokenizer_config.json").write_bytes((folder / "tokenizer_config.json").read_bytes())
    tokenize(CLIPTokenizer.from_pretrained(merged), ["xy " * 100])
    line = capsys.readouterr().out
    assert "Prompt 1 is 102 tokens long" in line and CHARACTER_COUNT_NOTE not in line
