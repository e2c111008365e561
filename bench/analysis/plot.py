"""Rate-distortion plots from a results document (``vtok plot results.json -o rd.png``)."""

from __future__ import annotations

from pathlib import Path

from vtok.bench.analysis.bdrate import METRICS, envelope
from vtok.bench.analysis.results import curves, load

MAGVIT2_BPP = 0.0384  # MAGVIT-v2's reported operating point on MCL-JCV (arXiv 2310.05737)
LABELS = {"psnr": "PSNR RGB (dB) ↑", "ms_ssim": "MS-SSIM ↑", "lpips": "LPIPS-alex ↓"}


def plot_rd(doc_or_path, out, title: str | None = None, log=None) -> Path:
    """bpp vs PSNR / MS-SSIM / LPIPS, one line per codec (mean over clips; the line joins the points that no cheaper
    point of the codec matches, the others are crosses), MAGVIT-v2's 0.0384 bpp marked; ``log``: told the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    doc = load(doc_or_path) if not isinstance(doc_or_path, dict) else doc_or_path
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    for ax, metric in zip(axes, LABELS):
        for codec, pts in sorted(curves(doc, metric).items()):
            best = envelope(pts, METRICS[metric] > 0)  # the line: points no cheaper point matches
            line, = ax.plot([p[0] for p in best], [p[1] for p in best], marker="o", label=codec)
            rest = [p for p in pts if p not in best]
            ax.plot([p[0] for p in rest], [p[1] for p in rest], "x", color=line.get_color(), alpha=0.6)
        ax.axvline(MAGVIT2_BPP, color="grey", linestyle="--", linewidth=1)
        ax.text(MAGVIT2_BPP, 0.02, " MAGVIT-v2\n 0.0384 bpp", transform=ax.get_xaxis_transform(), fontsize=7,
                color="grey")
        ax.set_xscale("log")
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(LABELS[metric])
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    p = doc.get("protocol", {})
    fig.suptitle(title or f"{p.get('dataset', '')}: {p.get('size', '')}, {p.get('frames', '')} frames per clip, "
                 f"{p.get('config', '')}")
    fig.tight_layout()
    out = Path(out)
    if not out.parent.exists():
        raise FileNotFoundError(f"output folder {out.parent} does not exist")
    tmp = out.with_name(f".{out.stem}.part{out.suffix}")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)
    if log is not None:
        log(out)
    return out
