"""Loading a codec: a tokenizer and its token prior by name or path (``load_codec``), and the bundled codec that
decodes a file of a given token family (``bundled_codec``: a bundled model with its prior or an earlier one).
"""

from __future__ import annotations

from pathlib import Path

from vtok.codec.coding import Codec
from vtok.codec.models.zoo import BUNDLED_MODELS, earlier_priors, load_tokenizer, model_path, prior_path
from vtok.codec.prior import IntegerPrior


def load_codec(model=None, prior=None, device: str = "cpu") -> Codec:
    """Tokenizer weights (a path or a bundled model's name; default: the bundled default) and prior weights
    (default: the file beside them, ``*-prior``)."""
    tok = load_tokenizer(model, device=device)
    device = tok._device()
    if prior is None:
        prior = prior_path(model)
    if not Path(prior).is_file():
        raise FileNotFoundError(f"no token prior at {prior} (pass `prior=PATH`)")
    ip = IntegerPrior.load(prior).to(device)
    try:
        tok.family_of(ip.cfg.bits)
    except ValueError:
        raise ValueError(f"prior {prior} codes {ip.cfg.bits}-bit tokens but the tokenizer makes {tok.bits}-bit "
                         f"tokens") from None
    return Codec(tok, ip, _base_codec(tok, model) if Path(prior) == prior_path(model) else None)


def _base_codec(tok, model) -> Codec | None:
    """The codec of the family named by the weights' metadata ``base_codec``, among the earlier priors beside them:
    the tokenizer's sign bits with the prior they grew up with (``Codec.base``)."""
    want = tok.meta.get("base_codec")
    return next((c for c in _earlier_codecs(tok, model) if c.family_id == want), None) if want else None


def _earlier_codecs(tok, model):
    """``tok`` with each of the earlier priors kept beside ``model``'s weights (``zoo.earlier_priors``)."""
    for path in earlier_priors(model):
        yield Codec(tok, IntegerPrior.load(path).to(tok._device()))


def bundled_codec(model_id: str, device: str = "cpu") -> Codec | None:
    """The bundled model that codes files whose header names ``model_id`` (with its prior, or one of its
    ``earlier_priors``), or None."""
    for name in BUNDLED_MODELS:
        if not model_path(name).is_file():
            continue
        if (codec := load_codec(name, device=device)).codes(model_id):
            return codec
        for older in _earlier_codecs(codec.tokenizer, name):
            if older.codes(model_id):
                return older
    return None
