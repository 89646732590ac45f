"""Pooling heads as torch modules, traced into the exported graph. Same math as `numpy_pooling`."""

from __future__ import annotations

import torch

from trt_embed.poolers.numpy_pooling import POOLING_MODES


class Pooling(torch.nn.Module):
    """Pools [B, S, H] token states with a [B, S] mask into [B, H]."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        if mode not in POOLING_MODES:
            raise ValueError(f"unknown pooling mode {mode!r}; valid: {', '.join(POOLING_MODES)}")
        self.mode = mode

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(hidden.dtype)
        batch = torch.arange(hidden.shape[0], device=hidden.device)
        first = mask.to(torch.int32).argmax(dim=1)
        if self.mode == "cls":
            return hidden[batch, first]
        if self.mode == "max":
            return hidden.masked_fill(m == 0, -1e9).max(dim=1).values
        if self.mode == "last":
            positions = mask.to(torch.int32) * torch.arange(mask.shape[1], device=mask.device, dtype=torch.int32)
            last = positions.argmax(dim=1)
            return hidden[batch, last]
        if self.mode == "weightedmean":
            positions = torch.arange(1, hidden.shape[1] + 1, device=hidden.device)[None, :] - first[:, None]
            m = (mask * positions).unsqueeze(-1).to(hidden.dtype)
        summed = (hidden * m).sum(dim=1)
        count = m.sum(dim=1).clamp(min=1e-9)
        if self.mode == "mean_sqrt_len":
            return summed / count.sqrt()
        return summed / count
