"""Every quantizer behind the one interface: shapes, index round trips, straight-through gradients, hand-checked loss
values, codebook usage, dead-code restart, and a 2-step training run of a tiny tokenizer with each."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vtok.codec.models.quantizers import QUANTIZERS, build_quantizer, codebook_usage
from vtok.codec.models.quantizers.base import QuantizerOutput, pack_indices, unpack_indices
from vtok.codec.models.quantizers.fq import disentanglement_loss, latent_frame_features
from vtok.codec.models.quantizers.regvq import prior_kl
from vtok.codec.models.tokenizer import VideoTokenizer
from vtok.codec.training.train import TrainConfig, train
from vtok.codec.media.write import write_video
from tests.conftest import SHARED, smooth_clip, tiny_config

HAVE_LPIPS = (SHARED / "weights" / "lpips" / "alexnet_features.safetensors").exists()

# Each quantizer at 6 bits per token, small enough for a unit test.
ARGS = {
    "lfq": dict(bits=6, group_bits=3),
    "vq": dict(bits=6, dim=4),
    "fq": dict(bits=6, branches=2, dim=8, code_dim=4, align_weight=0.0),
    "gsq": dict(bits=6, groups=2, group_dim=4),
    "regvq": dict(bits=6, dim=4),
    "rlfq": dict(bits=6, base_bits=4, refine=[1, 3], scales=[0.5, 0.7], group_bits=2, entropy_weight=0.1),
}


def _z(q, seed=0, shape=(2, 3, 4, 5)):
    g = torch.Generator().manual_seed(seed)
    b, t, h, w = shape
    return torch.randn(b, q.dim, t, h, w, generator=g)


def test_registry_has_every_quantizer():
    assert set(QUANTIZERS) == {"lfq", "rlfq", "vq", "fq", "gsq", "regvq"} == set(ARGS)
    with pytest.raises(ValueError, match="unknown quantizer"):
        build_quantizer("pq")
    with pytest.raises(ValueError, match="quantizer 'vq'"):
        build_quantizer("vq", bits=6, branches=2)


@pytest.mark.parametrize("name", sorted(ARGS))
@pytest.mark.parametrize("training", [False, True])
def test_shapes_and_indices_round_trip(name, training):
    torch.manual_seed(0)
    q = build_quantizer(name, **ARGS[name]).train(training)
    z = _z(q)
    out = q(z)
    assert isinstance(out, QuantizerOutput)
    assert q.bits_per_token == 6
    assert out.codes.shape == (2, q.code_dim, 3, 4, 5) and out.indices.shape == (2, 3, 4, 5)
    assert out.indices.dtype == torch.int64 and 0 <= int(out.indices.min()) and int(out.indices.max()) < 2 ** 6
    torch.testing.assert_close(q.indices_to_codes(out.indices), out.codes.detach(), atol=1e-5, rtol=0)
    assert all(v.ndim == 0 and torch.isfinite(v) for v in out.losses.values())
    assert bool(out.losses) == training


@pytest.mark.parametrize("name", sorted(ARGS))
def test_gradients_reach_the_encoder(name):
    torch.manual_seed(0)
    q = build_quantizer(name, **ARGS[name]).train()
    z = _z(q).requires_grad_(True)
    out = q(z)
    (out.codes * torch.randn_like(out.codes)).sum().backward()  # straight-through: codes carry z's gradient
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_vq_losses_by_hand():
    q = build_quantizer("vq", bits=1, dim=2, restart_every=0).train()
    with torch.no_grad():
        q.embed.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    z = torch.tensor([0.1, 0.2]).view(1, 2, 1, 1, 1)
    out = q(z)
    assert int(out.indices) == 0
    # commitment 0.25 * mean((0.1, 0.2)^2) = 0.00625; codebook loss: the same distance, weight 1
    assert float(out.losses["commit"].detach()) == pytest.approx(0.00625)
    assert float(out.losses["codebook"].detach()) == pytest.approx(0.025)


def test_vq_cosine_and_ema():
    torch.manual_seed(0)
    q = build_quantizer("vq", bits=4, dim=3, metric="cosine")
    assert torch.allclose(q.indices_to_codes(torch.arange(16).view(1, 1, 4, 4)).norm(dim=1), torch.ones(1, 1, 4, 4))
    e = build_quantizer("vq", bits=2, dim=2, ema=True, decay=0.0, restart_every=0).train()
    with torch.no_grad():
        e.embed.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0], [-10.0, 10.0], [10.0, -10.0]]))
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0]]).T.reshape(1, 2, 1, 1, 2)  # two vectors, both nearest to code 0
    out = e(z)
    assert "codebook" not in out.losses and out.indices.flatten().tolist() == [0, 0]
    assert torch.allclose(e.embed[0], torch.tensor([1.0, 0.0]), atol=1e-3)  # decay 0: the codes' mean


def test_fq_disentanglement_and_alignment_by_hand():
    eye = torch.eye(4)
    assert float(disentanglement_loss([eye[:2], eye[2:]])) == 0.0  # orthogonal codes
    assert float(disentanglement_loss([eye[:2], 3 * eye[:2]])) == pytest.approx(1.0)  # parallel codes
    three = [torch.tensor([[1.0, 0, 0]]), torch.tensor([[0, 1.0, 0]]), torch.tensor([[1.0, 1.0, 0]])]
    assert float(disentanglement_loss(three)) == pytest.approx((0 + 0.5 + 0.5) / 3)
    # Teacher features on the latent grid: latent frame 0 <- frame 0, latent frame 1 <- mean of frames 1..4.
    images = torch.arange(5.0).view(1, 1, 5, 1, 1).expand(1, 3, 5, 8, 8)
    feats = latent_frame_features(lambda x: x[:, :1], images, (2, 2, 2))
    assert feats.shape == (1, 1, 2, 2, 2) and feats[0, 0, :, 0, 0].tolist() == [0.0, 2.5]


@pytest.mark.skipif(not HAVE_LPIPS, reason="needs ../shared/weights/lpips")
def test_fq_alignment_with_the_default_teacher():
    torch.manual_seed(0)
    q = build_quantizer("fq", bits=6, dim=8, code_dim=4).train()
    images = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    out = q(torch.randn(1, 8, 2, 4, 4), images)
    assert 0 <= float(out.losses["align"].detach()) <= 2 * q.align_weight
    assert not any("teacher" in k for k in q.state_dict())  # the teacher is never saved with the model


def test_gsq_is_spherical_and_exact_on_codewords():
    q = build_quantizer("gsq", bits=4, groups=2, group_dim=3).train()
    cb = q.codebook().detach()
    z = torch.cat([cb[1], cb[2]]).view(1, 6, 1, 1, 1) * 5.0  # scale does not matter on the sphere
    out = q(z)
    assert unpack_indices(out.indices.flatten(), 2, 2) == [torch.tensor([1]), torch.tensor([2])]
    assert float(out.losses["codebook"].detach()) == pytest.approx(0.0, abs=1e-10)
    assert float(out.losses["commit"].detach()) == pytest.approx(0.0, abs=1e-10)
    assert torch.allclose(out.codes.view(2, 3).norm(dim=1), torch.ones(2))


def test_regvq_prior_term_by_hand():
    assert float(prior_kl(torch.full((16,), 1 / 16))) == pytest.approx(0.0, abs=1e-6)
    skewed = torch.tensor([0.5, 0.5, 0.0, 0.0])
    assert float(prior_kl(skewed)) > 1.0
    q = build_quantizer("regvq", bits=2, dim=2, mask_ratio=0.0).train()
    with torch.no_grad():
        q.embed.copy_(torch.tensor([[1.0, 0], [0, 1.0], [-1.0, 0], [0, -1.0]]))
    z = torch.tensor([[0.0, 0.0]] * 4).T.reshape(1, 2, 1, 2, 2)  # equidistant from every code: uniform
    assert float(q(z).losses["prior"].detach()) == pytest.approx(0.0, abs=1e-6)


def test_regvq_masks_a_share_of_positions_stochastically():
    torch.manual_seed(0)
    q = build_quantizer("regvq", bits=3, dim=2, tau=100.0, mask_ratio=1.0).train()
    z = torch.randn(1, 2, 1, 32, 32)
    det = build_quantizer("regvq", bits=3, dim=2).eval()
    det.load_state_dict(q.state_dict())
    assert (q(z).indices != det(z).indices).float().mean() > 0.5  # a hot softmax samples nearly uniformly
    assert "contrastive" in q(z).losses
    q.mask_ratio = 0.0
    assert torch.equal(q(z).indices, det(z).indices) and "contrastive" not in q(z).losses


def test_codebook_usage_on_a_toy_distribution():
    torch.manual_seed(0)
    assert codebook_usage(torch.tensor([0, 0, 1, 1]), 4) == {"perplexity": 2.0, "used": 0.5}
    q = build_quantizer("vq", bits=2, dim=2, restart_every=0).eval()
    with torch.no_grad():
        q.embed.copy_(torch.tensor([[5.0, 5.0], [-5.0, -5.0], [5.0, -5.0], [-5.0, 5.0]]))
    centers = torch.tensor([[5.0, 5.0], [-5.0, -5.0]])[torch.arange(1000) % 2]  # two of the four clusters
    z = (centers + 0.1 * torch.randn(1000, 2)).T.reshape(1, 2, 1, 1, 1000)
    u = q.usage(q(z).indices)
    assert u["used"] == 0.5 and u["perplexity"] == pytest.approx(2.0, abs=1e-3)


def test_dead_codes_restart_onto_the_data():
    torch.manual_seed(0)
    q = build_quantizer("vq", bits=3, dim=2, restart_every=5, restart_threshold=0.5).train()
    with torch.no_grad():
        q.embed.copy_(torch.randn(8, 2) + 100.0)  # every code far from the data ...
        q.embed[0] = 0.0  # ... but one
    z = torch.randn(1, 2, 1, 16, 16)
    assert q.usage(q.eval()(z).indices)["used"] == 1 / 8
    q.train()
    for _ in range(150):  # running usage decays by 1 % a step: dead after ~70 steps, then restarted
        q(z)
    assert q.usage(q.eval()(z).indices)["used"] > 0.5


def test_fq_and_gsq_report_sub_codebook_usage():
    idx = pack_indices([torch.tensor([0, 1, 2, 3]), torch.tensor([0, 0, 0, 0])], 3)
    fq = build_quantizer("fq", **ARGS["fq"])
    u = fq.usage(idx.view(1, 1, 2, 2))
    assert u["branch0"]["used"] == 0.5 and u["branch1"]["used"] == 1 / 8
    gsq = build_quantizer("gsq", **ARGS["gsq"])
    assert gsq.usage(idx)["shared_codebook"]["used"] == 4 / 8


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("qvideos")
    write_video(d / "srcA__one.mkv", smooth_clip(9, 40, 48, seed=1), 25)
    return d


@pytest.mark.parametrize("name", sorted(ARGS))
def test_two_training_steps(name, video_dir, tmp_path):
    qargs = {k: v for k, v in ARGS[name].items() if k not in ("bits", "group_bits")}
    if name == "fq" and HAVE_LPIPS:
        qargs["align_weight"] = 0.5  # with the default offline teacher
    nested = name in ("lfq", "rlfq")
    mcfg = tiny_config(quantizer=name, bits=6, group_bits=3 if name == "lfq" else 0, nested_dropout=0.5 * nested,
                       quantizer_args=qargs, arch="tae" if name == "rlfq" else "magvit")  # refinement: tae only
    tcfg = TrainConfig(run_dir=str(tmp_path / "run"), data=[str(video_dir)], cache_short_side=40, steps=2, batch=2,
                       frames=5, crop=32, lpips_weight=0.0, warmup=1, progress=False, save_every_s=0.0, log_every=1)
    out = train(tcfg, mcfg, log=lambda *a: None)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(np.isfinite(r["loss"]) for r in rows)
    if name == "fq" and HAVE_LPIPS:
        assert "align" in rows[0] and "disentangle" in rows[0]
    from vtok.codec.models.zoo import load_tokenizer
    tok = load_tokenizer(out)
    assert tok.cfg.quantizer == name and tok.bits == 6
    video = smooth_clip(5, 16, 24)
    assert tok.decode(tok.encode(video), size=video.shape[:3]).shape == video.shape


def test_non_nested_quantizers_refuse_bit_prefixes():
    with pytest.raises(ValueError, match="nested dropout"):
        VideoTokenizer(tiny_config(quantizer="vq", bits=6, quantizer_args={"dim": 4}))
    tok = VideoTokenizer(tiny_config(quantizer="vq", bits=6, nested_dropout=0.0, quantizer_args={"dim": 4})).eval()
    with pytest.raises(ValueError, match="whole 6-bit tokens"):
        tok.encode(smooth_clip(1, 8, 8), bits=3)


@pytest.mark.skipif(not HAVE_LPIPS, reason="needs ../shared/weights/lpips")
def test_ablation_runs_end_to_end_and_resumes(video_dir, tmp_path):
    from vtok.bench.studies.quantizers import QuantizerAblation, run_ablation

    write_video(tmp_path / "eval.mkv", smooth_clip(5, 48, 64, seed=3), 25)
    cfg = QuantizerAblation(names=["vq", "gsq"], bits=6, steps=2, prior_steps=2, batch=2, crop=32, stem_ch=8, ch=16,
                            train_data=[str(video_dir)], eval_data=[str(tmp_path / "eval.mkv")], frames_eval=5,
                            size=(64, 48), out=str(tmp_path / "ab"))
    logs = []
    doc = run_ablation(cfg, json_path=tmp_path / "ab.json", log=logs.append)
    assert [r["quantizer"] for r in doc["results"]] == ["vq", "gsq"]
    for r in doc["results"]:
        assert r["mean"]["bpp"] > 0 and np.isfinite(r["mean"]["psnr"]) and 0 <= r["mean"]["lpips"] <= 2
        assert 0 < r["usage"]["used"] <= 1 and 1 <= r["usage"]["perplexity"] <= 2 ** 6
        assert r["config"]["quantizer"] == r["quantizer"] and r["config"]["bits"] == 6
    assert json.loads((tmp_path / "ab.json").read_text())["results"] == doc["results"]
    logs.clear()
    assert run_ablation(cfg, log=logs.append)["results"] == doc["results"]  # finished runs are reused
    assert not any("training" in str(line) for line in logs)


def test_ablation_table_has_a_row_per_quantizer():
    from vtok.bench.studies.quantizers import ablation_table

    row = {"quantizer": "fq", "config": {"bits": 12}, "params": 1.5e6, "raw_bpp": 0.05,
           "mean": {"bpp": 0.02, "psnr": 20.0, "ms_ssim": 0.7, "lpips": 0.4},
           "usage": {"perplexity": 900.0, "used": 0.5, "branch0": {"used": 1.0}, "branch1": {"used": 0.25}}}
    table = ablation_table({"results": [row, dict(row, quantizer="vq", usage={"perplexity": 10.0, "used": 0.01})]})
    lines = table.splitlines()
    assert len(lines) == 4 and lines[2].startswith("| fq | 12 | 1.50 M | 0.0200 |")
    assert "branch0: 100 %, branch1: 25 %" in lines[2] and lines[3].endswith("| 1.0 % | — |")


def tiny_teacher():
    """A ``module:`` teacher factory for the test below."""
    return torch.nn.Conv2d(3, 5, 3, stride=4, padding=1)


def test_teachers_load_from_local_files(tmp_path):
    import torchvision
    from safetensors.torch import save_file

    from vtok.codec.models.teacher import build_teacher

    torch.manual_seed(0)
    save_file(torchvision.models.resnet18(weights=None).state_dict(), str(tmp_path / "r18.safetensors"))
    t = build_teacher(f"torchvision:resnet18:{tmp_path / 'r18.safetensors'}:layer2")
    assert t.out_dim == 128 and t(torch.zeros(1, 3, 64, 64)).shape == (1, 128, 8, 8)
    assert not any(p.requires_grad for p in t.parameters())
    m = build_teacher("module:tests.test_quantizers:tiny_teacher")
    assert m.out_dim == 5
    for bad in ("clip:vit", "torchvision:resnet18", "module:no.such.module:f", "lpips-alexnet:relu9"):
        with pytest.raises((ValueError, FileNotFoundError)):
            build_teacher(bad)
