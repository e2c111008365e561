"""The model zoo: the bundled models (one per token family), the ids of files written before ids named families, the
priors kept beside a model, and saving and loading tokenizer weights (safetensors, the config in the metadata).

What decides a file's bits is named by its id; ``codec/coding.py`` uses this table to find the bundled model (and
prior) that decodes a file. Training writes weights with ``save_tokenizer``; everything loads them with
``load_tokenizer``.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from vtok.codec.models.config import TokenizerConfig
from vtok.codec.models.tokenizer import VideoTokenizer

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
# The bundled models, one per token family, by the name ``--model NAME`` takes; each file has its token prior beside
# it (``*-prior``). A better decoder for a family's bits replaces the family's file (docs/MODELS.md, "Weights").
BUNDLED_MODELS = {"default": "vtok-default.safetensors", "tae36": "vtok-tae36.safetensors",
                  "magvit18": "vtok-magvit18.safetensors"}
DEFAULT_WEIGHTS = WEIGHTS_DIR / BUNDLED_MODELS["default"]
# A file names what decides its bits. Ids that also hashed the decoder (before ids named token families) map to the
# family of the same bits, so that such files (``.vtok`` headers' codec ids, token files' tokenizer ids) still decode.
EARLIER_IDS = {
    "32ad88e7196fb016": "6f9eaa5da13976bb", "ed8d8daff681531e": "6f9eaa5da13976bb",  # codec ids: tae36
    "ca3c687d825e9720": "6f9eaa5da13976bb", "183fa2cceda96023": "6f9eaa5da13976bb",
    "b01505523f629820": "f6d2e67887517958",  # codec id: magvit18
    "141c0de8e6ffaabf": "ae209bf883dac097", "2e5e00d28b4eb2e3": "ae209bf883dac097",  # tokenizer ids: tae36
    "943e98dc39fff720": "ae209bf883dac097", "3ba023b169bd20f9": "ae209bf883dac097",
    "e443f91a05a98692": "8611e4ddf134c964",  # tokenizer id: magvit18
}


def model_path(model=None) -> Path:
    """The weights file of ``model``: a bundled model's name (``None``: ``"default"``) or a path."""
    if model is None:
        return DEFAULT_WEIGHTS
    if str(model) in BUNDLED_MODELS:
        return WEIGHTS_DIR / BUNDLED_MODELS[str(model)]
    return Path(model)


def prior_path(model=None) -> Path:
    """The token prior that belongs to a model's weights: ``<model>-prior.safetensors`` beside them."""
    base = model_path(model)
    return base.with_name(base.stem + "-prior.safetensors")


def earlier_priors(model) -> list[Path]:
    """The earlier priors kept beside a model's weights, ``<model>-prior-<family id>.safetensors``: a prior
    re-fitted for the same tokens makes a new token family, and these still decode the files of the old ones."""
    base = model_path(model)
    return sorted(base.parent.glob(base.stem + "-prior-*.safetensors"))


def save_tokenizer(model: VideoTokenizer, path, half: bool = True, extra: dict | None = None,
                   decode_only: bool = False) -> None:
    """Write weights (fp16 by default) and the config to a safetensors file. ``decode_only``: without the encoder,
    the family id stated in the metadata instead (a decode-only model, ``VideoTokenizer.drop_encoder``)."""
    from safetensors.torch import save_file

    sd = {k: (v.detach().half() if half and v.is_floating_point() else v.detach()).cpu().contiguous()
          for k, v in model.state_dict().items() if not (decode_only and k.startswith("encoder."))}
    meta = {"format": "vtok-tokenizer", "config": model.cfg.to_json()}
    if decode_only or model.decode_only:
        meta["decode_only_family"] = model.family_id
    meta.update({k: str(v) for k, v in (extra or {}).items()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(sd, str(tmp), metadata=meta)
    tmp.replace(path)


def resolve_device(device: str | torch.device = "cpu") -> torch.device:
    """``cpu``, ``cuda`` (``cuda:N``) or ``auto`` (CUDA when there is a device, else the CPU) as a torch device; a
    CUDA device that is not there is a one-line ``ValueError``."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.split(":")[0] not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r} (cpu, cuda or auto)")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name}: no CUDA device is available here (use `device=cpu` or `device=auto`)")
    return torch.device(name)


def load_tokenizer(path=None, device: str | torch.device = "cpu") -> VideoTokenizer:
    """Load a tokenizer from a safetensors file or a bundled model's name (``None``: the default), strictly, in
    eval mode, on ``device`` (``resolve_device``); a decode-only file loads without an encoder."""
    device = resolve_device(device)
    from safetensors import safe_open

    path = model_path(path)
    if not path.is_file():
        names = ", ".join(BUNDLED_MODELS)
        raise FileNotFoundError(f"no tokenizer weights at {path} (bundled models: {names})")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            sd = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise ValueError(f"{path} is not a safetensors tokenizer file ({e})") from None
    if meta.get("format") != "vtok-tokenizer" or "config" not in meta:
        raise ValueError(f"{path} is not a vtok tokenizer file (no vtok config in its metadata)")
    model = build_tokenizer(TokenizerConfig.from_json(meta["config"]), sd, meta)
    return model.to(device).eval()


def build_tokenizer(cfg: TokenizerConfig, weights: dict, meta: dict) -> VideoTokenizer:
    """A tokenizer of ``cfg`` holding ``weights`` (strictly: every tensor, no other), with the weights file's
    metadata ``meta``; a decode-only file (metadata ``decode_only_family``: a 16-hex-digit family id) has no encoder."""
    model = VideoTokenizer(cfg)
    family = meta.get("decode_only_family")
    if family is not None:
        if not re.fullmatch(r"[0-9a-f]{16}", family):
            raise ValueError(f"the weights name a token family {family[:40]!r}, which is not 16 hex digits")
        model.drop_encoder(family)
    ref = model.state_dict()
    model.load_state_dict({k: v.to(ref[k].dtype) if k in ref else v for k, v in weights.items()}, strict=True)
    model.meta = meta
    return model
