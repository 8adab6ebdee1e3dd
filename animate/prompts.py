"""Turn the two prompt inputs into the list of prompts the walk visits."""


class InputError(ValueError):
    """An input the schema cannot reject; the message is one sentence saying what to do."""


def parse_prompts(prompt_start: str, prompt_end: str) -> list[str]:
    """Return [prompt_start, *prompt_end.split("|")], each trimmed; P >= 2 prompts.

    Raises InputError when prompt_start, prompt_end or any `|` piece is empty after trimming.
    """
    first = prompt_start.strip()
    if not first:
        raise InputError("prompt_start is empty: give it the text of the first prompt.")
    if not prompt_end.strip():
        raise InputError(
            "prompt_end is empty: give it one or more prompts separated by '|'."
        )
    pieces = [piece.strip() for piece in prompt_end.split("|")]
    for position, piece in enumerate(pieces, start=1):
        if not piece:
            raise InputError(
                f"prompt_end has an empty prompt at position {position} of {len(pieces)} "
                f"({prompt_end!r}): remove the extra '|' or write a prompt there."
            )
    return [first, *pieces]
