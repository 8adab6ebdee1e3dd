"""The batch sizes of the walk on 16, 24, 40, 80 and 141 GB cards (bench.memory), listed
here so a reader can check them, and the table of docs/memory.md, which must be the one
`python -m bench.memory` prints."""

import pytest

from bench import memory
from tests.conftest import REPO_ROOT

# Batches per card (16, 24, 40, 80, 141 GB), row by row as bench.memory lists them. Usable
# after setup: SD 1.5 (2.6 GiB of fp16 weights with the safety checker and FILM) 12.4 GiB on
# 16 GB; SDXL (6.5 GiB) 8.5 GiB. Each stage takes at most half of that.
EXPECTED = [
    # the default request, 512x512
    ("keyframes", 512 << 20, (12, 16, 16, 16, 16)),  # 2 UNet samples x 64 KiB x 64x64 latent pixels
    ("decode", 384 << 20, (8, 8, 8, 8, 8)),  # 1536 B x 512x512 pixels; at most 8
    ("FILM", 4668 * 512 * 512, (5, 8, 15, 16, 16)),  # depth 3: 6 pyramids of 328 B + 2700 B per pixel
    # SDXL at 1024x768
    ("keyframes", 1536 << 20, (2, 5, 10, 16, 16)),
    ("decode", 1152 << 20, (3, 7, 8, 8, 8)),
    ("FILM", 4668 * 1024 * 768, (1, 2, 4, 10, 16)),
    # the largest request, 1024x768, 50 keyframes, S=50 (depth 6: 9 pyramids per pair)
    ("keyframes", 1536 << 20, (4, 6, 12, 16, 16)),
    ("decode", 1152 << 20, (5, 8, 8, 8, 8)),
    ("FILM", 5652 * 1024 * 768, (1, 2, 4, 9, 16)),
    # FILM at 1024x768, S=5
    ("FILM", 4668 * 1024 * 768, (1, 2, 5, 11, 16)),
]


@pytest.fixture(scope="module")
def table():
    return memory.batch_table()


def test_the_batch_sizes_of_every_request_on_every_card(table):
    weights, rows = table
    assert memory.CARDS_GB == (16, 24, 40, 80, 141)
    assert [(row.stage.split()[0], row.bytes_per_item, row.batches) for row in rows] == EXPECTED
    # SD 1.5 with its safety checker, and SDXL base with both text encoders, both with FILM.
    assert round(weights["sd15"] / 2**30, 1) == 2.6 and round(weights["sdxl"] / 2**30, 1) == 6.5


def test_the_docs_table_is_the_one_bench_memory_prints(table):
    docs = (REPO_ROOT / "docs" / "memory.md").read_text()
    assert memory.markdown(*table) in docs, "docs/memory.md: paste in what `python -m bench.memory` prints"
