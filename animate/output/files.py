"""Output files: written whole or not at all, and a full disk reported in one sentence."""

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

# The one atomic write of the project lives in film_net, because film_net must not import
# animate (animate's __init__ imports the pipeline, which imports film_net: a cycle).
from film_net.files import write_atomically

# What the operating system says when a write does not fit: the disk or the user's quota is
# full, or the file is over the process's size limit.
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class DiskFullError(OSError):
    """A file of the prediction did not fit on the disk; the message says what to do."""


def disk_full_message(what: str, reason: str) -> str:
    """The one sentence a user sees when `what` could not be written for lack of space."""
    return (
        f"The disk is full, so {what} could not be written ({reason}): free disk space where "
        f"the server writes its outputs (its TMPDIR), or ask for fewer frames or a smaller size."
    )


@contextlib.contextmanager
def reporting_full_disk(what: str, error_type: type[Exception] = DiskFullError) -> Iterator[None]:
    """Turn an OSError from a full disk inside the block into an error_type naming `what`."""
    try:
        yield
    except OSError as error:
        if error.errno not in DISK_FULL_ERRNOS:
            raise
        raise error_type(disk_full_message(what, os.strerror(error.errno))) from error


def write_png(image: np.ndarray, path: Path) -> Path:
    """Write a uint8 (H, W, 3) image as PNG, atomically (see write_atomically); returns path."""

    def write(partial: Path) -> None:
        with reporting_full_disk(path.name):
            Image.fromarray(image).save(partial, format="PNG")

    write_atomically(path, write)
    return path
