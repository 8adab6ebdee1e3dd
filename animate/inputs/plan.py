"""Keyframe places and frame counts of the walk (docs/behaviour.md, "The walk" and "Frame arithmetic")."""

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

# A keyframe's place on the walk: (segment, t), t in [0, 1] from the segment's first prompt
# to its next one (the first prompt again after the last, on a loop's closing segment).
Place = tuple[int, float]


@dataclass(frozen=True)
class KeyframePlan:
    """Where each keyframe sits on the walk, how many frames each gap between neighbouring
    keyframes gets, and whether the walk closes back to its first keyframe.

    num_prompts P >= 2, keyframes_per_segment N >= 2, interpolation_steps S >= 1.
    loop: the walk goes on from the last prompt back to the first (P segments instead of
    P - 1), and its last gap runs from the last keyframe to the first.
    places: each keyframe's (segment, t) in walk order (even pacing places them); None: N
    per segment, evenly (linear pacing). gap_frames: each gap's frames (its left keyframe
    and the in-betweens after it), every one >= 1 (even pacing, audio); None: S each.
    """

    num_prompts: int
    keyframes_per_segment: int
    interpolation_steps: int
    ping_pong: bool = False
    loop: bool = False
    places: tuple[Place, ...] | None = None
    gap_frames: tuple[int, ...] | None = None

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
        if self.loop and self.ping_pong:
            raise ValueError("a loop cannot also play ping-pong")
        if self.places is not None and len(self.places) < 2:
            raise ValueError(f"a walk needs at least 2 keyframes, got {len(self.places)}")
        if self.gap_frames is not None and (
            len(self.gap_frames) != self.num_gaps or any(frames < 1 for frames in self.gap_frames)
        ):
            raise ValueError(f"gap_frames must be {self.num_gaps} numbers of at least 1, got {self.gap_frames}")

    @property
    def num_segments(self) -> int:
        """P - 1: one segment per pair of neighbouring prompts; P with loop (the last goes back to the first)."""
        return self.num_prompts if self.loop else self.num_prompts - 1

    @property
    def num_keyframes(self) -> int:
        """K: (P-1)(N-1) + 1 (neighbouring segments share their end keyframe), P(N-1) with
        loop (the closing segment ends on the first keyframe); the number of places when given."""
        if self.places is not None:
            return len(self.places)
        return self.num_segments * (self.keyframes_per_segment - 1) + (0 if self.loop else 1)

    @property
    def num_gaps(self) -> int:
        """K - 1 gaps between neighbouring keyframes; K with loop (the last back to the first)."""
        return self.num_keyframes if self.loop else self.num_keyframes - 1

    def frames_per_gap(self) -> tuple[int, ...]:
        """The frames of each gap: gap_frames, or S each."""
        if self.gap_frames is not None:
            return self.gap_frames
        return (self.interpolation_steps,) * self.num_gaps

    @property
    def num_frames(self) -> int:
        """F forward frames: the gaps' frames, plus the last keyframe unless the walk loops
        ((K-1)S + 1, or KS with loop, when every gap has S)."""
        return sum(self.frames_per_gap()) + (0 if self.loop else 1)

    @property
    def num_output_frames(self) -> int:
        """Frames in the file: F, or 2F-2 with ping-pong (the end frames are not repeated).

        K >= 2 always (P >= 2, N >= 2), so F >= 2 and the ping-pong count is at least 2.
        """
        if self.ping_pong:
            return 2 * self.num_frames - 2
        return self.num_frames

    def keyframe_times(self) -> list[Place]:
        """(segment, t) of each of the K keyframes, in order: `places` when given.

        Otherwise keyframe k lies in segment k // (N-1) at t = j/(N-1); the last keyframe of
        an open walk is reported as t=1 of the last segment, so the first and last are
        exactly the end prompts. A loop has no such last keyframe: its closing segment ends
        on the first keyframe.
        """
        if self.places is not None:
            return list(self.places)
        steps_per_segment = self.keyframes_per_segment - 1
        times = []
        for k in range(self.num_keyframes):
            segment = min(k // steps_per_segment, self.num_segments - 1)
            j = k - segment * steps_per_segment
            times.append((segment, j / steps_per_segment))
        return times

    def walk_position(self, position: float) -> tuple[int, float]:
        """(segment, t) at a fraction `position` in [0, 1] of the walk from the first prompt
        to the last.

        The walk runs over the P-1 segments with equal length each; position 0.5 is where
        the shared start is denoised. A loop's closing segment is not counted, so a loop
        shares the start of the same walk without loop.
        """
        if not 0.0 <= position <= 1.0:
            raise ValueError(f"walk position must be in [0, 1], got {position}")
        open_segments = self.num_prompts - 1
        along = position * open_segments
        segment = min(int(along), open_segments - 1)
        return segment, along - segment


def ping_pong_order(num_frames: int) -> list[int]:
    """Frame indices played with ping-pong: forward, then backward without the end frames.

    frames + reversed(frames[1:-1]): 2F-2 indices for F >= 2.
    """
    forward = list(range(num_frames))
    return forward + forward[-2:0:-1]


def share_out(weights: Sequence[float], total: int) -> list[int]:
    """Whole shares of `total`, at least one each, about in proportion to `weights` (>= 0).

    Shares are given one at a time to the one whose weight per share is then the largest
    (the D'Hondt method), so the largest weight / share is as small as whole shares allow;
    ties go to the earliest. All-zero weights are shared as if equal, so equal weights get
    equal shares (the first ones one more when `total` does not divide evenly).
    """
    if total < len(weights):
        raise ValueError(f"cannot give {len(weights)} shares of at least one out of {total}")
    if not any(weights):
        weights = [1.0] * len(weights)
    shares = [1] * len(weights)
    queue = [(-weight, index) for index, weight in enumerate(weights)]
    heapq.heapify(queue)
    for _ in range(total - len(weights)):
        _, index = heapq.heappop(queue)
        shares[index] += 1
        heapq.heappush(queue, (-weights[index] / shares[index], index))
    return shares


def coarse_plan(plan: KeyframePlan) -> KeyframePlan:
    """The first round of even pacing: every prompt's own keyframe and some of the others,
    evenly: per segment, the largest number of gaps that divides N - 1 and is at most half
    of it (1 when N - 1 is prime). Dividing N - 1 means that where the picture changes
    evenly, the second round splits every gap alike and the keyframes fall where linear
    pacing puts them."""
    gaps = plan.keyframes_per_segment - 1
    gaps_per_segment = max(count for count in range(1, gaps // 2 + 1) if gaps % count == 0) if gaps > 1 else 1
    return KeyframePlan(plan.num_prompts, gaps_per_segment + 1, plan.interpolation_steps, plan.ping_pong, plan.loop)


def split_places(plan: KeyframePlan, parts: Sequence[int]) -> list[tuple[Place, bool]]:
    """The keyframes of `plan` (linear, no `places`) with gap g split into parts[g] equal
    parts, in walk order: (place, whether it is one of plan's own keyframes).

    Every gap of a linear plan lies within one segment (its right end may be the next
    segment's t = 0, or the first keyframe on a loop's closing gap: t = 1 of this segment).
    """
    times = plan.keyframe_times()
    if len(parts) != plan.num_gaps:
        raise ValueError(f"need parts for each of the {plan.num_gaps} gaps, got {len(parts)}")
    places = []
    for gap, count in enumerate(parts):
        segment, left = times[gap]
        right_segment, right = times[(gap + 1) % len(times)]
        right = right if right_segment == segment else 1.0
        places.append(((segment, left), True))
        places += [((segment, left + (right - left) * i / count), False) for i in range(1, count)]
    if not plan.loop:
        places.append((times[-1], True))
    return places
