"""Files written whole or not at all: under a temporary name, renamed into place once complete."""

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

Result = TypeVar("Result")


def write_atomically(path: str | os.PathLike, write: Callable[[Path], Result]) -> Result:
    """write(partial_path), then rename the partial file (.<name>.partial beside `path`) to
    `path`, so a reader never sees half a file; returns what `write` returned. The partial
    file is removed if anything (cancellation included) interrupts."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        result = write(partial)
        os.replace(partial, path)
        return result
    finally:
        partial.unlink(missing_ok=True)
