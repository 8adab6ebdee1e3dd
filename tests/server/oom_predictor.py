"""The real Predictor on an accelerator that runs out of memory: for serving by the real Cog
server in tests (COG_PREDICT_TYPE_STUB=tests/server/oom_predictor.py:OutOfMemoryPredictor).

After predict.py's own setup it gives the walk a FakeMemory (tests/fake_memory.py) as its
accelerator, whose limits come from $ANIMATE_FAKE_OOM, e.g. "keyframes=1,FILM=2": the
largest batch of each stage that fits. It reports 64 GiB usable, so batches are sized as on
a large GPU. predict() is inherited unchanged, so the schema is predict.py's.
"""

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # the server loads this file by its path
    sys.path.insert(0, str(REPO_ROOT))

from predict import Predictor  # noqa: E402
from tests.fake_memory import GIB, FakeMemory  # noqa: E402

PREDICTOR = "tests/server/oom_predictor.py:OutOfMemoryPredictor"


def limits_from(text: str) -> dict[str, int]:
    """{"keyframes": 1, "FILM": 2} from "keyframes=1,FILM=2"."""
    pairs = (item.split("=") for item in text.split(",") if item)
    return {stage: int(size) for stage, size in pairs}


class OutOfMemoryPredictor(Predictor):
    def setup(self) -> None:
        super().setup()
        self.components.memory = FakeMemory(64 * GIB, limits_from(os.environ["ANIMATE_FAKE_OOM"]))
        print(f"Fake accelerator memory: largest batches {self.components.memory.limits}", flush=True)
