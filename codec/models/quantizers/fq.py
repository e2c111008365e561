"""Factorized quantization (FQ), from FQGAN: Bai et al., "Factorized Visual Tokenization and Generation"
(arXiv 2411.16681).

One shared encoder feature ``z`` feeds ``k`` (2 or 3) branches; each branch has its own adapter (a 1×1 projection to
``code_dim`` channels) and its own small VQ codebook; the decoder reads all branches' codes side by side
(``k × code_dim`` channels). Two losses on top of each branch's VQ losses:

* **disentanglement**: the mean squared cosine similarity of every pair of branch outputs at the same position
  (``(q_i · q_j)²`` of l2-normalised codes), weight ``disentangle_weight`` (0.1): it pushes the branches to encode
  complementary information; orthogonal codes cost 0.
* **representation alignment** of one branch (``align_branch``): its codes, through a small projection head, are
  pulled towards a frozen teacher's features of the input frames (``1 − cosine``), weight ``align_weight``. The
  teacher is pluggable (``codec.models.teacher``); the default is the LPIPS AlexNet from ``../shared/weights/lpips`` because
  FQGAN's CLIP / DINOv2 teachers cannot be downloaded here (a weaker, less semantic teacher than the paper's).

The token index packs the branches' indices, branch 0 in the lowest bits: ``bits = k × bits_per_branch``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vtok.codec.models.quantizers.base import (Quantizer, QuantizerOutput, codebook_usage, from_vectors,
    pack_indices, to_vectors, unpack_indices)
from vtok.codec.models.quantizers.vq import VectorQuantizer
from vtok.codec.models.teacher import DEFAULT_TEACHER, teacher_dim


def disentanglement_loss(branches: list[torch.Tensor]) -> torch.Tensor:
    """Mean over pairs of branches of the mean squared cosine similarity of their ``(N, d)`` codes.

    >>> round(float(disentanglement_loss([torch.eye(4)[:2], torch.eye(4)[2:]])), 6)
    0.0
    """
    normed = [F.normalize(b.float(), dim=1) for b in branches]
    pairs = [(normed[i] * normed[j]).sum(1).pow(2).mean() for i in range(len(normed)) for j in range(i + 1, len(normed))]
    return torch.stack(pairs).mean()


def latent_frame_features(teacher: nn.Module, images: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """Teacher features of ``images`` ``(B, 3, T, H, W)`` on the latent grid ``(T', H', W')`` → ``(B, C, T', H', W')``.

    Latent frame 0 sees frame 0; latent frame ``t`` covers frames ``4t − 3 .. 4t`` (their features are averaged).
    """
    b, _, t, h, w = images.shape
    tl, hl, wl = grid
    with torch.no_grad():
        f = teacher(images.transpose(1, 2).reshape(b * t, 3, h, w).float())
        f = F.interpolate(f, size=(hl, wl), mode="bilinear", align_corners=False)
        f = f.view(b, t, -1, hl, wl)
        step = (t - 1) // max(1, tl - 1) if tl > 1 else 1
        groups = [f[:, :1]] + [f[:, 1 + (i - 1) * step:1 + i * step] for i in range(1, tl)]
        return torch.stack([g.mean(1) for g in groups], dim=2)


class FactorizedQuantizer(Quantizer):
    """FQ: ``branches`` VQ sub-codebooks of ``2**(bits / branches)`` codes on adapters of one shared feature.

    Args:
        bits: bits per token (a multiple of ``branches``). branches: 2 or 3. dim: shared encoder channels.
        code_dim: channels of each branch's codes. metric: the branches' VQ lookup (``cosine`` as in FQGAN).
        disentangle_weight, align_weight: the two FQ losses (0 disables). align_branch: the branch aligned to the
            teacher. teacher: spec for ``codec.models.teacher.build_teacher`` (used in training only; never saved).
        teacher_channels: feature channels of the teacher (needed for the projection head before the teacher is
            built; known for ``lpips-alexnet``). vq_args: more ``VectorQuantizer`` arguments for every branch.
    Shapes: ``z (B, dim, T, H, W)`` → codes ``(B, branches × code_dim, T, H, W)``, indices ``(B, T, H, W)``.
    """

    def __init__(self, bits: int = 12, branches: int = 2, dim: int = 16, code_dim: int = 8, metric: str = "cosine",
                 disentangle_weight: float = 0.1, align_weight: float = 0.5, align_branch: int = 0,
                 teacher: str = DEFAULT_TEACHER, teacher_channels: int = 0, vq_args: dict | None = None):
        super().__init__()
        if branches not in (2, 3):
            raise ValueError(f"FQ takes 2 or 3 branches, got {branches}")
        if bits % branches:
            raise ValueError(f"FQ bits ({bits}) must be a multiple of the branches ({branches})")
        if not 0 <= align_branch < branches:
            raise ValueError(f"align_branch must be in 0..{branches - 1}")
        self.bits, self.branches, self.dim, self.branch_dim = bits, branches, dim, code_dim
        self.branch_bits = self.group_bits = bits // branches  # group_bits: the token prior's bit groups
        self.disentangle_weight, self.align_weight, self.align_branch = disentangle_weight, align_weight, align_branch
        self.teacher_spec = teacher
        self.adapters = nn.ModuleList(nn.Linear(dim, code_dim) for _ in range(branches))
        self.codebooks = nn.ModuleList(VectorQuantizer(self.branch_bits, code_dim, metric, **(vq_args or {}))
                                       for _ in range(branches))
        channels = teacher_channels or teacher_dim(teacher)
        if align_weight > 0 and not channels:
            raise ValueError(f"FQ: give teacher_channels for teacher {teacher!r}")
        self.head = (nn.Sequential(nn.Linear(code_dim, 4 * code_dim), nn.SiLU(), nn.Linear(4 * code_dim, channels))
                     if align_weight > 0 else None)
        self._teacher = None  # built on first use in training, kept out of the state dict

    @property
    def code_dim(self) -> int:
        return self.branches * self.branch_dim

    @property
    def bits_per_token(self) -> int:
        return self.bits

    def teacher(self) -> nn.Module:
        if self._teacher is None:
            from vtok.codec.models.teacher import build_teacher

            t = build_teacher(self.teacher_spec)
            if self.head is not None and t.out_dim != self.head[-1].out_features:
                raise ValueError(f"teacher {self.teacher_spec!r} gives {t.out_dim} channels, the head expects "
                                 f"{self.head[-1].out_features} (set teacher_channels)")
            object.__setattr__(self, "_teacher", t.to(next(self.parameters()).device))
        return self._teacher

    def forward(self, z: torch.Tensor, images: torch.Tensor | None = None) -> QuantizerOutput:
        x = to_vectors(z).float()
        codes, parts, losses = [], [], {}
        for j, (adapter, vq) in enumerate(zip(self.adapters, self.codebooks)):
            c, idx, ls = vq.quantize_vectors(adapter(x))
            codes.append(c)
            parts.append(idx)
            for k, v in ls.items():
                losses[k] = losses.get(k, 0) + v
        if self.training and self.disentangle_weight > 0:
            losses["disentangle"] = self.disentangle_weight * disentanglement_loss(codes)
        if self.training and self.head is not None and images is not None:
            target = latent_frame_features(self.teacher(), images, tuple(z.shape[2:]))
            pred = self.head(codes[self.align_branch])
            losses["align"] = self.align_weight * (1 - F.cosine_similarity(pred, to_vectors(target), dim=1)).mean()
        index = pack_indices(parts, self.branch_bits).view(z.shape[0], *z.shape[2:])
        return QuantizerOutput(from_vectors(torch.cat(codes, 1), z.shape).to(z.dtype), index, losses)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        parts = unpack_indices(indices, self.branch_bits, self.branches)
        return torch.cat([vq.indices_to_codes(p) for vq, p in zip(self.codebooks, parts)], dim=1)

    def usage(self, indices: torch.Tensor) -> dict:
        out = codebook_usage(indices, 2 ** self.bits)
        for j, p in enumerate(unpack_indices(indices, self.branch_bits, self.branches)):
            out[f"branch{j}"] = self.codebooks[j].usage(p)
        return out
