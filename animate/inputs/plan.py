"""Keyframe times and frame counts of the walk (docs/behaviour.md, "The walk" and "Frame arithmetic")."""

from dataclasses import dataclass


@dataclass(frozen=True)
class KeyframePlan:
    """Where each keyframe sits on the walk and how many frames the animation has.

    num_prompts P >= 2, keyframes_per_segment N >= 2, interpolation_steps S >= 1.
    """

    num_prompts: int
    keyframes_per_segment: int
    interpolation_steps: int
    ping_pong: bool = False

    def __post_init__(self):
        if self.num_prompts < 2:
            raise ValueError(f"a walk needs at least 2 prompts, got {self.num_prompts}")
        if self.keyframes_per_segment < 2:
            raise ValueError(
                f"a segment needs at least 2 keyframes, got {self.keyframes_per_segment}"
            )
        if self.interpolation_steps < 1:
            raise ValueError(
                f"interpolation_steps must be at least 1, got {self.interpolation_steps}"
            )

    @property
    def num_segments(self) -> int:
        """P - 1: one segment per pair of neighbouring prompts."""
        return self.num_prompts - 1

    @property
    def num_keyframes(self) -> int:
        """K = (P-1)(N-1) + 1: neighbouring segments share their end keyframe."""
        return self.num_segments * (self.keyframes_per_segment - 1) + 1

    @property
    def num_frames(self) -> int:
        """F = (K-1)S + 1 forward frames: each gap gives S frames, plus the last keyframe."""
        return (self.num_keyframes - 1) * self.interpolation_steps + 1

    @property
    def num_output_frames(self) -> int:
        """Frames in the file: F, or 2F-2 with ping-pong (the end frames are not repeated).

        K >= 2 always (P >= 2, N >= 2), so F >= 2 and the ping-pong count is at least 2.
        """
        if self.ping_pong:
            return 2 * self.num_frames - 2
        return self.num_frames

    def keyframe_times(self) -> list[tuple[int, float]]:
        """(segment, t) of each of the K keyframes, in order.

        Keyframe k lies in segment k // (N-1) at t = j/(N-1); the last keyframe is reported
        as t=1 of the last segment, so the first and last are exactly the end prompts.
        """
        steps_per_segment = self.keyframes_per_segment - 1
        times = []
        for k in range(self.num_keyframes):
            segment = min(k // steps_per_segment, self.num_segments - 1)
            j = k - segment * steps_per_segment
            times.append((segment, j / steps_per_segment))
        return times

    def walk_position(self, position: float) -> tuple[int, float]:
        """(segment, t) at a fraction `position` in [0, 1] of the whole walk.

        The walk runs over the P-1 segments with equal length each; position 0.5 is where
        the shared start is denoised.
        """
        if not 0.0 <= position <= 1.0:
            raise ValueError(f"walk position must be in [0, 1], got {position}")
        along = position * self.num_segments
        segment = min(int(along), self.num_segments - 1)
        return segment, along - segment


def ping_pong_order(num_frames: int) -> list[int]:
    """Frame indices played with ping-pong: forward, then backward without the end frames.

    frames + reversed(frames[1:-1]): 2F-2 indices for F >= 2.
    """
    forward = list(range(num_frames))
    return forward + forward[-2:0:-1]
