"""An accelerator memory for tests: the seam animate.memory.DeviceMemory, faked.

It reports the usable bytes it is given (None: the CPU's fixed batch sizes) and raises
torch.cuda.OutOfMemoryError, as a GPU would inside the call, for a batch of a stage above
that stage's limit. Used by tests/animate/test_out_of_memory.py and, inside the real server,
by tests/server/oom_predictor.py.
"""

import torch

from animate.memory import DeviceMemory

GIB = 1 << 30


class FakeMemory(DeviceMemory):
    """usable: the bytes usable_bytes() reports; limits: {stage: the largest batch that fits}
    (stage: a key of animate.memory.BATCHED_STAGES); the limits hold from the `from_call`-th
    batch of each stage on (1: from the first), so a walk can run out of memory midway.

    Records every batch announced, (stage, size), in `calls`, and counts `releases`.
    """

    def __init__(self, usable: int | None = None, limits: dict[str, int] | None = None, from_call: int = 1):
        super().__init__(torch.device("cpu"))
        self.usable = usable
        self.limits = dict(limits or {})
        self.from_call = from_call
        self.calls: list[tuple[str, int]] = []
        self.releases = 0

    def usable_bytes(self) -> int | None:
        return self.usable

    def before_batch(self, stage: str, size: int) -> None:
        self.calls.append((stage, size))
        stage_calls = sum(1 for called, _ in self.calls if called == stage)
        if stage in self.limits and stage_calls >= self.from_call and size > self.limits[stage]:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (fake): {stage} at a batch of {size}")

    def release(self) -> None:
        self.releases += 1

    def sizes(self, stage: str) -> list[int]:
        """The sizes of the batches of `stage` announced so far, failed ones included."""
        return [size for called, size in self.calls if called == stage]
