"""script/output-hashes: the same code gives the same hashes twice, and a file that differs is named."""

import subprocess
import sys

from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "script" / "output-hashes"


def test_the_walks_hash_the_same_twice_and_a_changed_file_is_named(tmp_path):
    weights = tmp_path / "weights"
    first = subprocess.run([sys.executable, SCRIPT, "--weights", weights], capture_output=True, text=True, check=True)
    lines = first.stdout.splitlines()
    names = [line.split()[0] for line in lines]
    assert "gif-film-keyframes/animation.gif" in names and "gif-sdxl-film-keyframes/keyframe-002.png" in names
    assert all(len(line.split()[1]) == 64 for line in lines)
    # The second run against the first's hashes with one of them altered: every other file
    # is the same, and the altered one is named.
    changed = lines[0].split()[0]
    before = tmp_path / "before.txt"
    before.write_text(first.stdout.replace(lines[0], f"{changed} {'0' * 64}"))
    second = subprocess.run([sys.executable, SCRIPT, "--weights", weights, "--compare", before], capture_output=True, text=True)
    assert second.returncode == 1, second.stdout + second.stderr
    assert second.stdout.splitlines() == [
        f"differs: {changed} (before 000000000000, now {lines[0].split()[1][:12]})",
        f"{len(lines) - 1} of {len(lines)} files identical",
    ]
