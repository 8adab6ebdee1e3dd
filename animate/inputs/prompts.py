"""Turn the two prompt inputs into the list of prompts the walk visits."""

# The text encoder reads 77 tokens (a few hundred characters); text past that is cut and
# has no effect. A prompt this long is a client sending the wrong thing (a file, a base64
# image), and tokenizing megabytes only to drop them costs seconds, so it is refused.
MAX_PROMPT_CHARS = 20_000
# Each prompt adds N - 1 keyframes and is encoded in one text-encoder batch with the
# others; thousands of `|` pieces would exhaust memory instead of failing clearly.
MAX_PROMPTS = 100
# How much of an input an error message quotes.
QUOTE_CHARS = 60


class InputError(ValueError):
    """An input the schema cannot reject; the message is one sentence saying what to do."""


def is_blank(text: str) -> bool:
    """True when text has nothing to read: only whitespace, control or format characters."""
    return not any(char.isprintable() and not char.isspace() for char in text)


def quoted(text: str) -> str:
    """repr(text), shortened to its start when long, for error messages."""
    if len(text) <= QUOTE_CHARS:
        return repr(text)
    return f"{text[:QUOTE_CHARS]!r}… ({len(text):,} characters)"


def check_length(name: str, text: str) -> None:
    if len(text) > MAX_PROMPT_CHARS:
        raise InputError(
            f"{name} is {len(text):,} characters long, but the text encoder reads only the first "
            f"77 tokens of a prompt: shorten it to at most {MAX_PROMPT_CHARS:,} characters."
        )


def parse_prompts(prompt_start: str, prompt_end: str) -> list[str]:
    """Return [prompt_start, *prompt_end.split("|")], each trimmed; P >= 2 prompts.

    Raises InputError when an input is longer than MAX_PROMPT_CHARS, when there are more
    than MAX_PROMPTS prompts, or when prompt_start, prompt_end or any `|` piece is blank
    (see is_blank).
    """
    check_length("prompt_start", prompt_start)
    check_length("prompt_end", prompt_end)
    first = prompt_start.strip()
    if is_blank(first):
        raise InputError("prompt_start is empty: give it the text of the first prompt.")
    if is_blank(prompt_end):
        raise InputError(
            "prompt_end is empty: give it one or more prompts separated by '|'."
        )
    pieces = [piece.strip() for piece in prompt_end.split("|")]
    if 1 + len(pieces) > MAX_PROMPTS:
        raise InputError(
            f"prompt_end has {len(pieces):,} prompts separated by '|': use at most "
            f"{MAX_PROMPTS - 1}, so the walk visits at most {MAX_PROMPTS} prompts."
        )
    for position, piece in enumerate(pieces, start=1):
        if is_blank(piece):
            raise InputError(
                f"prompt_end has an empty prompt at position {position} of {len(pieces)} "
                f"({quoted(prompt_end)}): remove the extra '|' or write a prompt there."
            )
    return [first, *pieces]
