import re

import pytest
import torch

from animate import InputError, Settings, parse_prompts, settings_from_inputs
from animate.inputs.settings import INPUT_DEFAULTS


def inputs(**overrides):
    """All 15 inputs: the defaults, a small request, then `overrides`."""
    values = dict(
        INPUT_DEFAULTS,
        prompt_start="a cat",
        prompt_end="a dog",
        width=128,
        height=128,
        num_inference_steps=4,
        num_animation_frames=3,
        num_interpolation_steps=2,
        seed=1,
    )
    values.update(overrides)
    return values


def test_prompts_are_start_then_trimmed_pieces_of_end():
    assert parse_prompts("  a cat ", " a dog | a bird|a fish ") == [
        "a cat",
        "a dog",
        "a bird",
        "a fish",
    ]
    assert parse_prompts("x", "y") == ["x", "y"]


@pytest.mark.parametrize(
    "start, end, names",
    [
        ("", "a dog", "prompt_start"),
        ("   ", "a dog", "prompt_start"),
        ("a cat", "", "prompt_end"),
        ("a cat", "   ", "prompt_end"),
        ("a cat", "a||b", "position 2 of 3"),
        ("a cat", "|", "position 1 of 2"),
        ("a cat", "a | ", "position 2 of 2"),
    ],
)
def test_empty_prompt_or_piece_is_one_clear_sentence(start, end, names):
    with pytest.raises(InputError) as caught:
        parse_prompts(start, end)
    message = str(caught.value)
    assert names in message
    # One sentence: a single full stop, at the end, after the advice.
    assert message.endswith(".") and message.count(". ") == 0


def test_settings_carry_every_input_under_the_walk_names():
    settings = settings_from_inputs(**inputs(prompt_end="b | c", gif_ping_pong=True, seed=7))
    assert settings == Settings(
        prompts=("a cat", "b", "c"),
        width=128,
        height=128,
        num_inference_steps=4,
        prompt_strength=0.8,
        num_animation_frames=3,
        num_interpolation_steps=2,
        guidance_scale=7.5,
        frames_per_second=20,
        ping_pong=True,
        film_interpolation=True,
        intermediate_output=False,
        seed=7,
        output_format="gif",
    )


def test_given_seed_is_printed(capsys):
    settings_from_inputs(**inputs(seed=4294967295))
    assert "Using seed: 4294967295" in capsys.readouterr().out


def test_missing_seed_is_drawn_from_the_os_and_printed(capsys):
    seeds = {settings_from_inputs(**inputs(seed=None)).seed for _ in range(5)}
    printed = re.findall(r"^Using seed: (\d+)$", capsys.readouterr().out, re.M)
    assert sorted(int(s) for s in set(printed)) == sorted(seeds)
    assert len(seeds) > 1
    assert all(0 <= s <= 2**32 - 1 for s in seeds)


@pytest.mark.parametrize("seed", [-1, 2**32, -(2**63), 2**64 - 1, 7.0])
def test_every_seed_torch_takes_is_used_and_printed_as_given(seed, capsys):
    assert settings_from_inputs(**inputs(seed=seed)).seed == seed
    assert f"Using seed: {int(seed)}" in capsys.readouterr().out.splitlines()
    torch.Generator("cpu").manual_seed(int(seed))  # what the walk does with it


# Beyond torch's range; the floats are what the server makes of JSON integers beyond 64 bits.
@pytest.mark.parametrize("seed", [-(2**63) - 1, 2**64, float(-(2**63)), float(2**64), 1e30])
def test_seed_torch_refuses_is_refused_in_one_sentence(seed):
    with pytest.raises(InputError) as refused:
        settings_from_inputs(**inputs(seed=seed))
    message = str(refused.value)
    assert message.startswith(f"seed {seed} is out of range: use a whole number from -{2**63} to {2**64 - 1}.")
    assert message.count(". ") == 0
    if isinstance(seed, int):
        with pytest.raises((RuntimeError, ValueError)):
            torch.Generator("cpu").manual_seed(seed)


def test_settings_reject_empty_prompt_piece():
    with pytest.raises(InputError, match="empty prompt"):
        settings_from_inputs(**inputs(prompt_end="a||b"))


@pytest.mark.parametrize(
    "start, end, names",
    [
        ("\x00\x01\x02", "a dog", "prompt_start is empty"),
        ("a cat", "\u200b\u200d", "prompt_end is empty"),
        ("a cat", "a dog|\x07\x1b|a bird", "position 2 of 3"),
    ],
    ids=["control-start", "zero-width-end", "control-piece"],
)
def test_prompt_of_only_invisible_characters_is_empty(start, end, names):
    with pytest.raises(InputError, match=names):
        parse_prompts(start, end)


def test_visible_text_with_control_characters_and_emoji_is_kept():
    assert parse_prompts("a\tred\napple\x07 🍎", "❤️‍🔥 Ωmega | 赤いリンゴ") == ["a\tred\napple\x07 🍎", "❤️‍🔥 Ωmega", "赤いリンゴ"]


def test_prompt_far_longer_than_the_encoder_reads_is_refused_in_one_sentence():
    from animate.inputs.prompts import MAX_PROMPT_CHARS

    assert parse_prompts("a " * (MAX_PROMPT_CHARS // 2), "b")  # at the limit: accepted
    with pytest.raises(InputError) as caught:
        parse_prompts("x" * 5_000_000, "b")
    message = str(caught.value)
    assert message.startswith("prompt_start is 5,000,000 characters long")
    assert f"at most {MAX_PROMPT_CHARS:,} characters" in message and len(message) < 300
    with pytest.raises(InputError, match="^prompt_end is"):
        parse_prompts("a", "y" * (MAX_PROMPT_CHARS + 1))


def test_too_many_prompts_are_refused_in_one_sentence():
    from animate.inputs.prompts import MAX_PROMPTS

    assert len(parse_prompts("a", "|".join(["b"] * (MAX_PROMPTS - 1)))) == MAX_PROMPTS
    with pytest.raises(InputError, match=f"use at most {MAX_PROMPTS - 1}"):
        parse_prompts("a", "|".join(["b"] * MAX_PROMPTS))


def test_error_quotes_only_the_start_of_a_long_input():
    with pytest.raises(InputError) as caught:
        parse_prompts("a", "b" * 5000 + "||c")
    message = str(caught.value)
    assert "(5,003 characters)" in message and len(message) < 250
    assert message.count(". ") == 0 and message.endswith(".")  # still one sentence


def test_integral_float_seed_is_used_and_logged_as_an_integer(capsys):
    """The server accepts JSON 7.0 for an integer input and passes it on as a float."""
    settings = settings_from_inputs(**inputs(seed=7.0, num_inference_steps=4.0))
    assert settings.seed == 7 and type(settings.seed) is int
    assert settings.num_inference_steps == 4 and type(settings.num_inference_steps) is int
    assert "Using seed: 7\n" in capsys.readouterr().out


def test_upscale_defaults_to_none_and_gives_the_factor():
    assert settings_from_inputs(**inputs()).upscale_factor == 1
    for upscale, factor in (("none", 1), ("2x", 2), ("4x", 4)):
        settings = settings_from_inputs(**inputs(upscale=upscale))
        assert (settings.upscale, settings.upscale_factor) == (upscale, factor)


@pytest.mark.parametrize("width, height, upscale", [(1024, 512, "4x"), (768, 768, "4x"), (1024, 768, "2x")])
def test_the_largest_upscaled_frames_are_allowed(width, height, upscale):
    """4096x2048, 3072x3072 (exactly 4096x2304 pixels) and 2048x1536."""
    assert settings_from_inputs(**inputs(width=width, height=height, upscale=upscale)).upscale == upscale


def test_an_upscaled_frame_over_the_largest_output_is_refused_in_one_sentence():
    with pytest.raises(InputError) as caught:
        settings_from_inputs(**inputs(width=1024, height=768, upscale="4x"))
    assert str(caught.value) == (
        "upscale=4x would make frames of 4096x3072 pixels, more than the largest output, 9,437,184 pixels "
        "(4096x2304, what H.264 players decode): choose a smaller upscale, width or height."
    )
