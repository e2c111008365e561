"""TAEF2, a small pretrained image autoencoder, as our own modules that load its tensors unchanged (key for key).

TAEF2 (madebyollin/taesd, MIT licence; ``../shared/weights/taef2``) is a tiny distilled stand-in for the FLUX.2
image VAE: 8× spatial, 32 latent channels, plain 3×3 convolutions. vtok uses it as the frozen per-frame teacher of the
stem/head distillation (``codec/training/distill.py``) and loads its 1/4- and 1/8-resolution stages into the default
tokenizer (``codec/models/tae.py``). Images are ``(N, 3, H, W)`` in [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from vtok.codec.models.layers import TaeBlock, conv3, soft_clamp
from vtok.codec.paths import TAEF2_WEIGHTS

TAEF2_DIR = TAEF2_WEIGHTS
TAE_CH = 64
TAE_LATENT = 32


class Taef2Encoder(nn.Module):
    """TAEF2's image encoder, key for key. ``(N, 3, H, W)`` in [0, 1] → ``(N, 32, H/8, W/8)``.

    ``features(x)`` returns the 1/4-resolution features (output of layer 6) that the cheap stem is distilled to.
    """

    def __init__(self):
        super().__init__()
        c = TAE_CH
        layers = [conv3(3, c), TaeBlock(c), conv3(c, c, 2, bias=False), TaeBlock(c), TaeBlock(c), TaeBlock(c),
                  conv3(c, c, 2, bias=False), TaeBlock(c), TaeBlock(c), TaeBlock(c), conv3(c, c, 2, bias=False),
                  TaeBlock(c, pool=True), TaeBlock(c, pool=True), TaeBlock(c, pool=True), conv3(c, TAE_LATENT)]
        self.layers = nn.ModuleList(layers)

    def run(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        for layer in self.layers[start:stop]:
            x = layer(x)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x, 0, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x, 0, len(self.layers))


class Taef2Decoder(nn.Module):
    """TAEF2's image decoder, key for key. ``(N, 32, h, w)`` → ``(N, 3, 8h, 8w)`` in [0, 1].

    ``features(z)`` returns the 1/4-resolution features (output of layer 10) that the cheap head decodes from.
    """

    def __init__(self):
        super().__init__()
        c = TAE_CH
        up = nn.Upsample(scale_factor=2)
        layers = [nn.Identity(), conv3(TAE_LATENT, c), nn.ReLU(), TaeBlock(c, pool=True), TaeBlock(c, pool=True),
                  TaeBlock(c, pool=True), up, conv3(c, c, bias=False), TaeBlock(c), TaeBlock(c), TaeBlock(c), up,
                  conv3(c, c, bias=False), TaeBlock(c), TaeBlock(c), TaeBlock(c), up, conv3(c, c, bias=False),
                  TaeBlock(c), conv3(c, 3)]
        self.layers = nn.ModuleList(layers)

    def run(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        if start == 0:
            x = soft_clamp(x)
        for layer in self.layers[max(start, 1):stop]:
            x = layer(x)
        return x

    def features(self, z: torch.Tensor) -> torch.Tensor:
        return self.run(z, 0, 11)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.run(z, 0, len(self.layers)).clamp(0, 1)


def read_taef2(folder=None) -> tuple[dict, dict]:
    """TAEF2's encoder and decoder tensors (float32) from ``folder`` (default ``../shared/weights/taef2``)."""
    from safetensors.torch import load_file

    folder = Path(folder) if folder is not None else TAEF2_DIR
    if not (folder / "encoder.safetensors").is_file():
        raise FileNotFoundError(f"no TAEF2 weights in {folder} (encoder.safetensors, decoder.safetensors)")
    enc = {k: v.float() for k, v in load_file(str(folder / "encoder.safetensors")).items()}
    dec = {k: v.float() for k, v in load_file(str(folder / "decoder.safetensors")).items()}
    return enc, dec


def load_taef2(folder=None) -> tuple[Taef2Encoder, Taef2Decoder]:
    """TAEF2 as two frozen eval-mode modules (strict: every tensor must match)."""
    enc_sd, dec_sd = read_taef2(folder)
    enc, dec = Taef2Encoder(), Taef2Decoder()
    enc.layers.load_state_dict(enc_sd, strict=True)
    dec.layers.load_state_dict(dec_sd, strict=True)
    for m in (enc, dec):
        m.eval().requires_grad_(False)
    return enc, dec
