"""Smoke test of python -m bench.inputs on tiny weights: a row is run, measured and printed.
Nothing is timed-asserted."""

import pytest
import torch

from bench.inputs import PACING_REQUEST, print_table, run_rows
from bench.presets import tiny_components


@pytest.fixture(scope="module")
def components():
    # One thread: the tiny models gain nothing from more, and on a shared 2-core machine
    # spinning threads slow every op down.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tiny_components("cpu", torch.float32)
    torch.set_num_threads(threads)


def test_a_row_is_run_measured_and_printed(components, tmp_path, capsys):
    small = {**PACING_REQUEST, "width": 64, "height": 64, "num_inference_steps": 2, "num_animation_frames": 5}
    table = [("latent, pacing=even", {"film_interpolation": False, "pacing": "even"})]
    runs = run_rows(components, table, small, repeats=2, output_dir=tmp_path)
    first, second = runs["latent, pacing=even"]
    # PNDM: 3 calls for 2 steps, none shared; 3 + 2 keyframes in two rounds, each round's
    # first unconditional half once.
    assert first.unet_samples == second.unet_samples == (3 * 3 * 2 - 2) + (2 * 3 * 2 - 1)
    assert first.unevenness == second.unevenness and 0 < first.unevenness.cv < 1
    assert first.seconds > 0 and first.peak_mib > 0
    print_table("request", runs, with_changes=True)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| request | seconds | peak RSS | above start | UNet samples | CV | largest jump |"
    assert lines[2].startswith("| latent, pacing=even | ") and lines[2].count("|") == 8
