"""animate.inputs.music_pace: the rule that gives each gap between keyframes its frames,
on intensities whose answer is known."""

from pathlib import Path

import numpy as np
import pytest

from animate import InputError
from animate.inputs.audio import SAMPLE_RATE, AudioTrack, read_audio
from animate.inputs.music_pace import audio_gap_frames, paced_gap_frames
from tests.audio import clicks, wav


def keyframe_frames(gaps: list[int]) -> np.ndarray:
    """The frame each keyframe falls on: 0, then the running sum of the gaps."""
    return np.concatenate([[0], np.cumsum(gaps)])


@pytest.mark.parametrize("strength", [0.0, 0.5, 1.0])
def test_silence_gives_an_even_pace_whatever_the_strength(strength):
    assert paced_gap_frames(np.zeros(500), 9, 399, strength) == [44, 45, 44, 44, 45, 44, 44, 45, 44]


def test_strength_0_ignores_the_music():
    loud_end = np.concatenate([np.zeros(900), np.ones(100)])
    assert paced_gap_frames(loud_end, 9, 399, 0.0) == paced_gap_frames(np.zeros(1000), 9, 399, 0.0)


def test_steady_intensity_gives_an_even_pace():
    assert paced_gap_frames(np.ones(1000), 4, 100, 1.0) == [25, 25, 25, 25]


# At 0.5 the pace is half even, half the music: B(0.5) = 0.25, so keyframes 0-2 of 10 fall
# in the silent first half; at 1 only the first does.
@pytest.mark.parametrize("strength, keyframes_in_the_second_half", [(0.5, 8), (1.0, 10)])
def test_all_intensity_in_the_second_half_puts_most_keyframes_there(strength, keyframes_in_the_second_half):
    second_half = np.concatenate([np.zeros(500), np.ones(500)])
    gaps = paced_gap_frames(second_half, 10, 400, strength)
    positions = keyframe_frames(gaps)
    assert np.count_nonzero(positions > 200) == keyframes_in_the_second_half
    # The walk still starts and ends with the sound.
    assert positions[0] == 0 and positions[-1] == 400


def test_at_strength_1_a_silent_stretch_gets_one_long_gap():
    burst_then_silence = np.concatenate([np.ones(100), np.zeros(900)])
    assert paced_gap_frames(burst_then_silence, 4, 40, 1.0) == [2, 2, 2, 34]
    silence_then_burst = burst_then_silence[::-1]
    assert paced_gap_frames(silence_then_burst, 4, 40, 1.0) == [34, 2, 2, 2]


def test_a_loud_passage_speeds_the_walk_up_where_it_is():
    # Steady music with a loud passage over the middle fifth.
    intensity = np.ones(1000)
    intensity[400:600] = 10.0
    gaps = np.array(paced_gap_frames(intensity, 20, 2000, 0.5))
    positions = keyframe_frames(gaps)
    starts, ends = positions[:-1], positions[1:]
    inside, outside = (starts >= 800) & (ends <= 1200), (ends <= 800) | (starts >= 1200)
    assert inside.sum() >= 5
    assert gaps[inside].max() * 3 < gaps[outside].min()


@pytest.mark.parametrize("strength", [0.0, 0.25, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("seed", range(20))
def test_gaps_are_positive_and_share_every_frame(seed, strength):
    rng = np.random.default_rng(seed)
    intensity = rng.exponential(1.0, rng.integers(1, 2000)) * (rng.random(1) < 0.9)  # some all silence
    intensity[rng.random(intensity.size) < 0.5] = 0.0  # and silent stretches
    num_gaps = int(rng.integers(1, 100))
    num_frames = num_gaps + int(rng.integers(0, 3000))
    gaps = paced_gap_frames(intensity, num_gaps, num_frames, strength)
    assert len(gaps) == num_gaps and min(gaps) >= 1 and sum(gaps) == num_frames
    if strength < 1:  # a quiet passage still moves: no gap over 1 / (1 - strength) even gaps
        assert max(gaps) <= 2 + (num_frames - num_gaps) / (num_gaps * (1 - strength))


def test_as_many_frames_as_gaps_gives_each_gap_one():
    assert paced_gap_frames(np.random.default_rng(0).random(300), 9, 9, 0.5) == [1] * 9


def test_nonsense_is_a_programming_error():
    with pytest.raises(ValueError, match="cannot give each of 9 gaps one"):
        paced_gap_frames(np.ones(10), 9, 8, 0.5)
    with pytest.raises(ValueError, match="strength"):
        paced_gap_frames(np.ones(10), 9, 100, 1.5)


def track(seconds: float, intensity: np.ndarray | None = None) -> AudioTrack:
    return AudioTrack(Path("sound.wav"), seconds, np.zeros(100) if intensity is None else intensity)


def test_a_walk_gets_round_seconds_times_fps_frames_over_k_minus_1_gaps():
    gaps = audio_gap_frames(track(20.0), num_keyframes=10, fps=20, strength=0.5)
    assert len(gaps) == 9 and sum(gaps) == 399  # the last keyframe is frame 400


def test_a_looping_walk_has_k_gaps_sharing_every_frame():
    gaps = audio_gap_frames(track(20.0), num_keyframes=10, fps=20, strength=0.5, loop=True)
    assert gaps == [40] * 10


def test_as_many_frames_as_keyframes_is_enough():
    assert audio_gap_frames(track(0.5), num_keyframes=10, fps=20, strength=0.5) == [1] * 9
    assert audio_gap_frames(track(0.5), num_keyframes=10, fps=20, strength=0.5, loop=True) == [1] * 10


@pytest.mark.parametrize("loop", [False, True])
def test_a_sound_shorter_than_the_keyframes_is_refused_saying_how_long_it_must_be(loop):
    with pytest.raises(InputError) as error:
        audio_gap_frames(track(0.2), num_keyframes=10, fps=20, strength=0.5, loop=loop)
    assert str(error.value) == (
        "audio is 0.20 s long, 4 frames at 20 fps, fewer than the 10 keyframes: use a sound of at "
        "least 0.48 s, a higher gif_frames_per_second or fewer keyframes."
    )
    # 0.475 s is the shortest that rounds to 10 frames, and is accepted.
    assert len(audio_gap_frames(track(0.475), num_keyframes=10, fps=20, strength=0.5, loop=loop)) == 9 + loop


def test_twenty_seconds_of_clicks_at_120_bpm_give_an_even_walk_of_400_frames(tmp_path):
    path = tmp_path / "clicks.wav"
    path.write_bytes(wav(clicks(20.0), SAMPLE_RATE))
    gaps = audio_gap_frames(read_audio(path), num_keyframes=10, fps=20, strength=0.5)
    assert sum(gaps) + 1 == 400
    # A click every half second is steady: each gap is within a beat (10 frames) of 44.3.
    assert max(gaps) - min(gaps) <= 10, gaps
