"""Architecture options of film_net, with the fields and meaning of the official `Options`.

The defaults are the configuration of the released Style, L1 and VGG models
(34,436,667 parameters). `TINY_OPTIONS` is the same architecture at toy size, for tests
and the demo.
"""

import dataclasses
import json


@dataclasses.dataclass(frozen=True)
class FilmOptions:
    """How deep and wide each part of film_net is.

    pyramid_levels: levels of the image / feature pyramids and of the flow estimation.
    fusion_pyramid_levels: how many of the finest levels the fusion decoder uses.
    specialized_levels: how many finest levels have their own flow predictor; coarser
        levels share one predictor.
    sub_levels: depth of the feature sub-tree extracted at each pyramid level.
    flow_convs, flow_filters: 3x3 convs and filters of each specialized flow predictor,
        the last item being the shared predictor's (specialized_levels + 1 items).
    filters: base number of features; doubles at each finer-to-coarser step.
    """

    pyramid_levels: int = 7
    fusion_pyramid_levels: int = 5
    specialized_levels: int = 3
    sub_levels: int = 4
    flow_convs: tuple[int, ...] = (3, 3, 3, 3)
    flow_filters: tuple[int, ...] = (32, 64, 128, 256)
    filters: int = 64

    def __post_init__(self):
        # Lists (from JSON or callers) become tuples so that options stay hashable.
        object.__setattr__(self, "flow_convs", tuple(self.flow_convs))
        object.__setattr__(self, "flow_filters", tuple(self.flow_filters))
        self._validate()

    def _validate(self):
        """Raises ValueError, in one sentence, for options that cannot build a model."""
        if not 1 <= self.fusion_pyramid_levels <= self.pyramid_levels:
            raise ValueError(
                f"fusion_pyramid_levels must be between 1 and pyramid_levels "
                f"({self.pyramid_levels}), got {self.fusion_pyramid_levels}."
            )
        if not 1 <= self.specialized_levels < self.pyramid_levels:
            raise ValueError(
                f"specialized_levels must be at least 1 and less than pyramid_levels "
                f"({self.pyramid_levels}) so the shared flow predictor is used, "
                f"got {self.specialized_levels}."
            )
        if not 1 <= self.sub_levels <= self.specialized_levels + 1:
            # Deeper sub-trees would give the shared predictor's levels different widths.
            raise ValueError(
                f"sub_levels must be between 1 and specialized_levels + 1 "
                f"({self.specialized_levels + 1}), got {self.sub_levels}."
            )
        expected = self.specialized_levels + 1
        if len(self.flow_convs) != expected or len(self.flow_filters) != expected:
            raise ValueError(
                f"flow_convs and flow_filters need specialized_levels + 1 = {expected} items "
                f"each, got {list(self.flow_convs)} and {list(self.flow_filters)}."
            )
        if min(self.flow_convs) < 1 or min(self.flow_filters) < 2 or self.filters < 1:
            raise ValueError(
                "flow_convs must be at least 1, flow_filters at least 2 and filters at least 1, "
                f"got {list(self.flow_convs)}, {list(self.flow_filters)} and {self.filters}."
            )

    @property
    def alignment(self) -> int:
        """Inputs are padded to a multiple of this: 64 as the official interpolator does, or
        more when the pyramid is deeper than 7 levels (each level halves the size)."""
        return max(64, 2 ** (self.pyramid_levels - 1))

    def to_json(self) -> str:
        """The options as a JSON object (stored in the safetensors metadata)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "FilmOptions":
        """The options from `to_json`'s output; unknown fields raise ValueError."""
        fields = json.loads(text)
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"Unknown film_net options {unknown}; known options are {sorted(known)}.")
        return cls(**fields)


# About 22 thousand parameters, yet every component of the full model: two specialized flow
# predictors plus a shared one used on two levels, and a fusion decoder shallower than the
# pyramid. Works for any height and width (inputs are padded to a multiple of 64).
TINY_OPTIONS = FilmOptions(
    pyramid_levels=4,
    fusion_pyramid_levels=3,
    specialized_levels=2,
    sub_levels=3,
    flow_convs=(1, 1, 1),
    flow_filters=(8, 8, 16),
    filters=4,
)
