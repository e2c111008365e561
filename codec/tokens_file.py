"""Token export for language-model use: a video file ⇄ a ``.npz`` of token indices (``vtok tokenize`` /
``vtok detokenize``).

The ``.npz`` holds: ``tokens`` (int32 or int64 ``(T', H', W')``), ``sub_tokens`` (``(T', H', W', G)``, the index
split into ``group_bits``-bit sub-tokens, least significant first), ``size`` (``T, H, W`` of the video),
``fps`` (numerator, denominator), ``bits``, ``group_bits``, ``base_bits`` and ``model_id`` (the tokenizer's token
family: any decoder of the family detokenizes it).

Refinement bits (a model grown with ``vtok train --refine-bits``, ``quantizers/rlfq.py``): bits ``0 ..
base_bits - 1`` are the sign bits, one per latent channel; bit ``base_bits + j`` refines channel ``refine[j]`` (also
stored, ``refine``; empty without refinement bits). A language model may read the sign sub-tokens as a coarse token
and the refinement sub-tokens (the last one shorter when ``group_bits`` does not divide them) as its detail.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from vtok.bitstream.errors import VtokError

from vtok.codec.models.zoo import EARLIER_IDS, load_tokenizer
from vtok.codec.media.write import check_output, partial_path, write_video
from vtok.codec.media.read import probe, read_video


class TokenFileError(VtokError, ValueError):
    """A token file is unreadable or does not match the model; the message says what to do."""


def tokenize_file(src, out, model=None, bits: int | None = None, max_frames: int | None = None,
                  resize: tuple[int, int] | None = None, size=None, fps=None, device: str = "cpu", log=print) -> dict:
    """Tokenize a video file into ``out`` (.npz) on ``device``. Returns a summary dict."""
    out = Path(out)
    check_output(out)
    tok = load_tokenizer(model, device)
    info = probe(src, size, fps)
    video = read_video(src, max_frames=max_frames, resize=resize, size=size, fps=fps)
    tokens = tok.encode(video, bits=bits)
    bits = bits or tok.bits
    group = tok.group_bits
    groups = -(-bits // group)
    sub = np.stack([(tokens >> (group * g)) & ((1 << group) - 1) for g in range(groups)], axis=-1)
    dtype = np.int32 if bits <= 31 else np.int64
    tmp = partial_path(out)
    with open(tmp, "wb") as f:
        np.savez(f, tokens=tokens.astype(dtype), sub_tokens=sub.astype(dtype),
                 size=np.array(video.shape[:3], np.int64),
                 fps=np.array([info.fps.numerator, info.fps.denominator], np.int64),
                 bits=np.int64(bits), group_bits=np.int64(group), base_bits=np.int64(min(bits, tok.base_bits)),
                 refine=np.array(tok.quantizer.refine.tolist() if tok.refine_bits else [], np.int64)[
                     :max(0, bits - tok.base_bits)], model_id=np.str_(tok.family_id))
    tmp.replace(out)
    summary = {"frames": int(video.shape[0]), "height": int(video.shape[1]), "width": int(video.shape[2]),
               "tokens": list(tokens.shape), "bits": bits, "model_id": tok.family_id}
    log(f"{src}: {video.shape[0]} frames {video.shape[2]}x{video.shape[1]} -> tokens {tuple(tokens.shape)} "
        f"x {bits} bits -> {out}")
    return summary


def load_token_file(path) -> dict:
    """Read a token ``.npz`` written by ``tokenize_file``; raises TokenFileError when it is not one."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise TokenFileError(f"{path}: not a vtok token file ({e})") from None
    need = {"tokens", "size", "fps", "bits", "model_id"}
    if not need <= set(data):
        raise TokenFileError(f"{path}: not a vtok token file (missing {', '.join(sorted(need - set(data)))})")
    return data


def detokenize_file(src, out, model=None, device: str = "cpu", log=print) -> dict:
    """Decode a token ``.npz`` back to a video file (``.mkv``/``.mp4``/``.y4m``/PNG folder) on ``device``."""
    out = Path(out)
    check_output(out)
    data = load_token_file(src)
    tok = load_tokenizer(model, device)
    want = str(data["model_id"])
    # a model grown by refinement bits decodes its base family's tokens (its first bits) too
    families = {tok.family_id, tok.meta.get("base_family", tok.family_id)}
    if EARLIER_IDS.get(want, want) not in families:
        raise TokenFileError(f"{src} holds tokens of family {want}, but the loaded model's family is "
                             f"{tok.family_id}: pass `model=PATH` with weights of family {want}")
    t, h, w = (int(v) for v in data["size"])
    video = tok.decode(data["tokens"].astype(np.int64), bits=int(data["bits"]), size=(t, h, w))
    num, den = (int(v) for v in data["fps"])
    write_video(out, video, Fraction(num, den))
    log(f"{src}: tokens {tuple(data['tokens'].shape)} -> {t} frames {w}x{h} -> {out}")
    return {"frames": t, "height": h, "width": w}
