"""LPIPS (Zhang et al., arXiv 1801.03924) built offline: the ``lpips`` package's network with its AlexNet backbone read
from a local file (``../shared/weights/lpips``), since torchvision cannot download it here.

A frozen perceptual network, used by the training loss, the FQ quantizer's teacher and the bench's metrics.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from vtok.codec.paths import LPIPS_BACKBONE


def lpips_backbone_path(path=None) -> Path | None:
    """The AlexNet ``features`` weights to use: the argument, else ``VTOK_LPIPS_BACKBONE``, else ../shared's copy.

    Returns None when none of these exists (then torchvision's usual download is the only way left).
    """
    for cand in (path, os.environ.get("VTOK_LPIPS_BACKBONE"), LPIPS_BACKBONE):
        if cand and Path(cand).is_file():
            return Path(cand)
    if path or os.environ.get("VTOK_LPIPS_BACKBONE"):
        raise FileNotFoundError(f"LPIPS backbone not found: {path or os.environ.get('VTOK_LPIPS_BACKBONE')}")
    return None


def build_lpips(backbone=None, spatial: bool = False):
    """``lpips.LPIPS(net='alex')`` with its AlexNet loaded from a local safetensors file, frozen, in eval mode.

    The module takes images in [-1, 1] of shape ``(N, 3, H, W)``.
    """
    import lpips
    from safetensors.torch import load_file

    path = lpips_backbone_path(backbone)
    with warnings.catch_warnings():  # lpips calls torchvision's deprecated ``pretrained=`` argument
        warnings.simplefilter("ignore", UserWarning)
        if path is None:  # a machine with internet: the package's own download path
            model = lpips.LPIPS(net="alex", spatial=spatial, verbose=False)
        else:
            model = lpips.LPIPS(net="alex", pnet_rand=True, spatial=spatial, verbose=False)
    if path is not None:
        features = load_file(str(path))
        net = model.net
        slices = [net.slice1, net.slice2, net.slice3, net.slice4, net.slice5]
        target = {}
        for sl in slices:
            for name, _ in sl.named_parameters():
                target[name] = sl  # names are "<layer index>.weight" as in torchvision's alexnet().features
        missing = set(target) - set(features)
        if missing:
            raise ValueError(f"{path}: missing AlexNet tensors {sorted(missing)}")
        with torch.no_grad():
            for name, sl in target.items():
                dict(sl.named_parameters())[name].copy_(features[name])
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
