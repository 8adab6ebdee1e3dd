"""What the UNet is conditioned on besides the latents and the timestep, for either kind of
checkpoint: one type, so that the walk has one denoising path for SD 1.x/2.x and SDXL.

SD 1.x/2.x condition on per-token text embeddings only. SDXL adds a pooled text embedding
and 6 size numbers (see animate.text.sdxl), which its UNet takes as added_cond_kwargs, as
diffusers' StableDiffusionXLPipeline passes them.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Conditioning:
    """The conditioning of B samples.

    embeddings (B, L, D): per-token text embeddings, the UNet's encoder_hidden_states.
    pooled (B, E): SDXL's pooled text embedding; None for SD 1.x/2.x.
    time_ids (1, 6): SDXL's size conditioning, one row for every sample (it depends only
    on the requested size); None for SD 1.x/2.x.
    """

    embeddings: torch.Tensor
    pooled: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.embeddings.shape[0]

    def map(self, function: Callable[[torch.Tensor], torch.Tensor]) -> "Conditioning":
        """`function` applied to each per-sample tensor (embeddings, pooled), each of shape
        (B, ...) with the samples first; time_ids, the same for all, are kept."""
        pooled = None if self.pooled is None else function(self.pooled)
        return Conditioning(function(self.embeddings), pooled, self.time_ids)

    def __getitem__(self, rows: slice | torch.Tensor) -> "Conditioning":
        """The samples `rows` picks (a slice or an index tensor)."""
        return self.map(lambda tensor: tensor[rows])

    def expand(self, count: int) -> "Conditioning":
        """One sample (B = 1) as `count` samples, without copying."""
        return self.map(lambda tensor: tensor.expand(count, *tensor.shape[1:]))

    def unet_arguments(self) -> dict[str, object]:
        """The keyword arguments of the UNet call for these samples: encoder_hidden_states,
        and for SDXL added_cond_kwargs (text_embeds (B, E), time_ids (B, 6))."""
        if self.pooled is None:
            return {"encoder_hidden_states": self.embeddings}
        time_ids = self.time_ids.expand(len(self), -1)
        return {
            "encoder_hidden_states": self.embeddings,
            "added_cond_kwargs": {"text_embeds": self.pooled, "time_ids": time_ids},
        }


def cat(first: Conditioning, second: Conditioning) -> Conditioning:
    """The samples of `first`, then those of `second` (the two halves of guidance: their
    time_ids are the same, as in diffusers' SDXL pipeline, so `first`'s are kept)."""
    pooled = None if first.pooled is None else torch.cat([first.pooled, second.pooled])
    return Conditioning(torch.cat([first.embeddings, second.embeddings]), pooled, first.time_ids)
