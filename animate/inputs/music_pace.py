"""How the music paces the walk (docs/behaviour.md, "Audio"): how many frames each gap
between two neighbouring keyframes gets, so that the keyframes' times on the sound track
follow the music's cumulative intensity, blended with an even pace.
"""

import math

import numpy as np

from animate.inputs.audio import AudioTrack, audio_frame_count
from animate.inputs.prompts import InputError


def paced_gap_frames(intensity: np.ndarray, num_gaps: int, num_frames: int, strength: float) -> list[int]:
    """The frame count of each of num_gaps gaps: positive ints summing to num_frames.

    intensity: float (M,) >= 0, one value per equal slice of the sound track, in order.
    The rule: the pace at a fraction u of the track is

        B(u) = (1 - strength) * u + strength * C(u) / C(1)

    where C(u) is the intensity summed from the start to u (C = u when the track has no
    intensity at all, so silence gives an even pace). Keyframe k of the gaps' num_gaps + 1
    keyframes sits where B first reaches k / num_gaps (the first at the start, the last
    at the end). Every gap gets one frame; the other
    num_frames - num_gaps frames are shared out by where the keyframes sit, each keyframe
    at frame k + round(y_k * (num_frames - num_gaps)), y_k its fraction of the track.

    With strength < 1, B rises at least (1 - strength) as fast as an even pace, so a
    quiet passage still moves: no gap is longer than 1 / (1 - strength) times an even gap
    (plus one frame of rounding).
    """
    if num_gaps < 1:
        raise ValueError(f"a walk has at least one gap, got {num_gaps}")
    if num_frames < num_gaps:
        raise ValueError(f"{num_frames} frames cannot give each of {num_gaps} gaps one")
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    summed = np.concatenate([[0.0], np.cumsum(np.asarray(intensity, dtype=np.float64))])
    even = np.linspace(0.0, 1.0, summed.size)
    cumulative = summed / summed[-1] if summed[-1] > 0 else even
    pace = (1.0 - strength) * even + strength * cumulative
    keyframe_fractions = first_reaching(pace, even, np.arange(num_gaps + 1) / num_gaps)
    # The first keyframe at the start, the last at the end: at strength 1, B may stay at 0
    # through a silent start and reach 1 before a silent end.
    keyframe_fractions[0], keyframe_fractions[-1] = 0.0, 1.0
    positions = np.arange(num_gaps + 1) + np.floor(keyframe_fractions * (num_frames - num_gaps) + 0.5)
    return np.diff(positions).astype(int).tolist()


def first_reaching(values: np.ndarray, fractions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """For each target, the first fraction where the piecewise-linear `values` (rising or
    flat, from 0 to 1, sampled at `fractions`) reaches it.

    np.interp(targets, values, fractions) where values rise strictly; where they stay flat
    (silence at strength 1), the start of the flat part, which np.interp does not promise.
    """
    after = np.clip(np.searchsorted(values, targets, side="left"), 1, values.size - 1)
    low, span = values[after - 1], values[after] - values[after - 1]
    share = np.divide(targets - low, span, out=np.ones_like(targets), where=span > 0)
    return fractions[after - 1] + np.clip(share, 0.0, 1.0) * (fractions[after] - fractions[after - 1])


def audio_gap_frames(track: AudioTrack, num_keyframes: int, fps: int, strength: float, loop: bool = False) -> list[int]:
    """The frame count of each gap of a walk of num_keyframes keyframes set to track.

    The animation has F = round(seconds * fps) frames (audio_frame_count). The gaps are
    K - 1, sharing F - 1 frames (the last keyframe is the last frame); a looping walk has
    K gaps, the last back to the first keyframe, sharing all F. Either way each gap needs
    a frame, so F >= K: a sound shorter than that is refused (InputError), saying how
    long it must be.
    """
    num_frames = audio_frame_count(track.seconds, fps)
    if num_frames < num_keyframes:
        shortest = math.ceil((num_keyframes - 0.5) / fps * 100) / 100  # in hundredths, rounded up
        raise InputError(
            f"audio is {track.seconds:.2f} s long, {num_frames} frames at {fps} fps, fewer than the "
            f"{num_keyframes} keyframes: use a sound of at least {shortest:.2f} s, a higher "
            f"gif_frames_per_second or fewer keyframes."
        )
    if loop:
        return paced_gap_frames(track.intensity, num_keyframes, num_frames, strength)
    return paced_gap_frames(track.intensity, num_keyframes - 1, num_frames - 1, strength)
