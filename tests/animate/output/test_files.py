import os

import numpy as np
import pytest
from PIL import Image

from animate.output.files import DiskFullError, write_png


def test_png_is_written_whole_under_its_name(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    path = write_png(image, tmp_path / "keyframe-000.png")
    assert path == tmp_path / "keyframe-000.png"
    assert [p.name for p in tmp_path.iterdir()] == ["keyframe-000.png"]
    assert np.array_equal(np.asarray(Image.open(path)), image)


def test_png_on_a_full_disk_fails_in_one_sentence_and_leaves_nothing(tmp_path):
    os.symlink("/dev/full", tmp_path / ".keyframe-000.png.partial")
    with pytest.raises(DiskFullError, match=r"^The disk is full, so keyframe-000.png could not be written"):
        write_png(np.zeros((8, 8, 3), np.uint8), tmp_path / "keyframe-000.png")
    assert list(tmp_path.iterdir()) == []
