"""Frozen feature teachers for representation alignment (FQ's semantic branch, FQGAN arXiv 2411.16681).

FQGAN aligns one sub-codebook to CLIP / DINOv2 features. Such weights cannot be downloaded at run time here, so the
teacher is chosen by a spec string and read from local files only:

* ``lpips-alexnet[:LAYER]`` (default, ``LAYER`` = relu1..relu5, default relu5): the AlexNet ``features`` that LPIPS
  uses, from ``../shared/weights/lpips`` (or ``VTOK_LPIPS_BACKBONE``) — works offline out of the box, but AlexNet
  features are far less semantic than CLIP's or DINOv2's.
* ``torchvision:ARCH:PATH[:NODE]``: any torchvision model (e.g. ``resnet50``, ``vit_b_16``) with its state dict at
  ``PATH`` (``.safetensors``, or a ``.pth`` read with ``weights_only=True``); features from graph node ``NODE``
  (default: ``features`` for models that have it, else ``layer3``).
* ``timm:NAME:PATH``: a timm model (``pip install timm``) with its weights at ``PATH``; its last feature map.
* ``module:PACKAGE.MODULE:FUNCTION``: a factory of your own (e.g. around an ``open_clip`` visual tower) returning an
  ``nn.Module`` that maps ``(N, 3, H, W)`` images in [-1, 1] to ``(N, C, h, w)`` features and has an ``out_dim``.

Every teacher takes images in [-1, 1] and returns a feature map; ``build_teacher(spec)`` freezes it.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

DEFAULT_TEACHER = "lpips-alexnet:relu5"
_ALEX_DIMS = {"relu1": 64, "relu2": 192, "relu3": 384, "relu4": 256, "relu5": 256}
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class _AlexTeacher(nn.Module):
    def __init__(self, layer: str):
        super().__init__()
        from vtok.codec.models.perceptual import build_lpips

        if layer not in _ALEX_DIMS:
            raise ValueError(f"lpips-alexnet layer must be one of {', '.join(_ALEX_DIMS)}, got {layer!r}")
        lp = build_lpips()
        self.scaling, self.net, self.layer = lp.scaling_layer, lp.net, layer
        self.out_dim = _ALEX_DIMS[layer]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.net(self.scaling(x)), self.layer)


class _ImageNetTeacher(nn.Module):
    """Wraps a feature extractor that expects ImageNet-normalized [0, 1] images."""

    def __init__(self, body: nn.Module, out_dim: int, pick=None):
        super().__init__()
        self.body, self.out_dim, self.pick = body, out_dim, pick
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(((x + 1) / 2 - self.mean) / self.std)
        return self.pick(out) if self.pick else out


def _load_state_dict(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"teacher weights not found: {path}")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(p))
    sd = torch.load(str(p), map_location="cpu", weights_only=True)
    return sd.get("state_dict", sd) if isinstance(sd, dict) else sd


def _out_dim(module: nn.Module) -> int:
    with torch.no_grad():
        return int(module(torch.zeros(1, 3, 64, 64)).shape[1])


def build_teacher(spec: str = DEFAULT_TEACHER) -> nn.Module:
    """A frozen, eval-mode teacher for ``spec`` (see the module docstring); it has ``out_dim``."""
    kind, _, rest = spec.partition(":")
    if kind == "lpips-alexnet":
        teacher = _AlexTeacher(rest or "relu5")
    elif kind == "torchvision":
        import torchvision
        from torchvision.models.feature_extraction import create_feature_extractor

        arch, _, tail = rest.partition(":")
        path, _, node = tail.partition(":")
        if not arch or not path:
            raise ValueError(f"teacher spec {spec!r}: expected torchvision:ARCH:PATH[:NODE]")
        model = torchvision.models.get_model(arch, weights=None)
        model.load_state_dict(_load_state_dict(path))
        node = node or ("features" if hasattr(model, "features") else "layer3")
        body = create_feature_extractor(model, return_nodes={node: "out"})
        teacher = _ImageNetTeacher(body, 0, pick=lambda d: d["out"])
        teacher.out_dim = _out_dim(teacher)
    elif kind == "timm":
        try:
            import timm
        except ImportError:
            raise ValueError("teacher 'timm:...' needs the timm package (pip install timm)") from None
        name, _, path = rest.partition(":")
        if not name or not path or not Path(path).is_file():
            raise ValueError(f"teacher spec {spec!r}: expected timm:NAME:PATH with an existing weights file")
        body = timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": path}, features_only=True)
        teacher = _ImageNetTeacher(body, body.feature_info.channels()[-1], pick=lambda feats: feats[-1])
    elif kind == "module":
        mod, _, fn = rest.partition(":")
        try:
            teacher = getattr(importlib.import_module(mod), fn)()
        except (ImportError, AttributeError) as e:
            raise ValueError(f"teacher spec {spec!r}: cannot load the factory ({e})") from None
        if not hasattr(teacher, "out_dim"):
            teacher.out_dim = _out_dim(teacher)
    else:
        raise ValueError(f"unknown teacher {spec!r}: use lpips-alexnet[:LAYER], torchvision:ARCH:PATH[:NODE], "
                         f"timm:NAME:PATH or module:PKG.MOD:FUNCTION")
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def teacher_dim(spec: str) -> int | None:
    """The feature channels of ``spec`` when known without building it (lpips-alexnet), else None."""
    kind, _, rest = spec.partition(":")
    return _ALEX_DIMS.get(rest or "relu5") if kind == "lpips-alexnet" else None
