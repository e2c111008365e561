"""Training clips: a compact preprocessed cache of video segments and a sampler of random crops.

Decoding video on two CPU cores is slow, so ``build_cache`` decodes a few segments of every clip once (resized so the
short side is at most ``short_side``) into one uint8 ``.npy`` per clip. ``ClipSampler`` then draws training clips from
memory-mapped segments: random clip (with each *source* — the part of the file name before ``__`` — capped to a share
of the draws, so no one source such as talking heads dominates), random start, frame-rate jitter (every 1st or 2nd
frame), random crop with scale jitter, random horizontal flip.

Clips come out as float ``(B, 3, T, H, W)`` in [-1, 1].
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vtok.codec.media.info import VideoError
from vtok.codec.media.read import iter_frames, list_videos, probe


def source_of(path: Path) -> str:
    """The source a clip comes from: the file-name part before ``__`` (the whole stem if there is none)."""
    return path.stem.split("__")[0]


def build_cache(paths, out_dir, segments: int = 2, segment_frames: int = 33, short_side: int = 288,
                log=print) -> Path:
    """Decode ``segments`` evenly spaced runs of ``segment_frames`` frames from every clip into ``out_dir``.

    Writes ``<n>.npy`` arrays ``(S, F, H, W, 3)`` and ``index.json``; skips clips already cached. Unreadable clips are
    reported and left out.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    index_path = out / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    for i, path in enumerate(list_videos(paths)):
        key = str(path.resolve())
        if key in index:
            continue
        try:
            info = probe(path)
            scale = min(1.0, short_side / min(info.width, info.height))
            size = (max(2, round(info.width * scale / 2) * 2), max(2, round(info.height * scale / 2) * 2))
            n = info.frames or segment_frames * segments
            starts = [0] if n <= segment_frames else \
                sorted({int(s) for s in np.linspace(0, max(0, min(n, 600) - segment_frames), segments)})
            segs = []
            frames = iter_frames(path, resize=size)
            pos = 0
            for s in starts:
                seg = []
                for fr in frames:
                    pos += 1
                    if pos - 1 < s:
                        continue
                    seg.append(fr)
                    if len(seg) == segment_frames:
                        break
                if len(seg) >= 9:
                    segs.append(np.stack(seg[: len(seg)]))
            frames.close()
        except VideoError as e:
            log(f"skipped: {e}")
            continue
        if not segs:
            log(f"skipped: {path}: too few frames")
            continue
        t = min(len(s) for s in segs)
        arr = np.stack([s[:t] for s in segs])
        name = f"{len(index):04d}.npy"
        np.save(out / name, arr)
        index[key] = {"file": name, "source": source_of(path), "shape": list(arr.shape)}
        index_path.write_text(json.dumps(index, indent=1))
        log(f"[{i + 1}] cached {path.name}: {arr.shape}")
    return out


class ClipSampler:
    """Random training clips from a cache made by ``build_cache``.

    Args: cache_dir; frames (per clip, 1 + 4k; 1 for images); crop (square side in pixels); max_source_share (cap
    on the share of draws from one source); seed.
    ``sample(batch)`` → float ``(batch, 3, frames, crop, crop)`` in [-1, 1].
    """

    def __init__(self, cache_dir, frames: int = 17, crop: int = 128, max_source_share: float = 0.1, seed: int = 0):
        index = json.loads((Path(cache_dir) / "index.json").read_text())
        if not index:
            raise ValueError(f"empty training cache at {cache_dir}")
        self.arrays = [np.load(Path(cache_dir) / v["file"], mmap_mode="r") for v in index.values()]
        self.frames, self.crop = frames, crop
        self.rng = np.random.default_rng(seed)
        sources = [v["source"] for v in index.values()]
        self.weights = source_capped_weights(sources, max_source_share)

    def sample(self, batch: int) -> torch.Tensor:
        clips = []
        for _ in range(batch):
            arr = self.arrays[self.rng.choice(len(self.arrays), p=self.weights)]
            seg = arr[self.rng.integers(arr.shape[0])]
            step = 2 if self.rng.random() < 0.3 and (self.frames - 1) * 2 < seg.shape[0] else 1
            span = (self.frames - 1) * step + 1
            t0 = self.rng.integers(0, max(1, seg.shape[0] - span + 1))
            h, w = seg.shape[1:3]
            side = min(h, w, int(self.crop * self.rng.uniform(1.0, 1.6)))
            y0, x0 = self.rng.integers(0, h - side + 1), self.rng.integers(0, w - side + 1)
            x = np.array(seg[t0:t0 + span:step, y0:y0 + side, x0:x0 + side])  # a writable copy
            if x.shape[0] < self.frames:  # short segment: hold the last frame
                x = np.concatenate([x, np.repeat(x[-1:], self.frames - x.shape[0], 0)])
            v = torch.from_numpy(x).permute(3, 0, 1, 2).float()
            if side != self.crop:
                v = F.interpolate(v, size=(self.crop, self.crop), mode="bilinear", antialias=True, align_corners=False)
            if self.rng.random() < 0.5:
                v = v.flip(-1)
            clips.append(v)
        return torch.stack(clips).div_(127.5).sub_(1.0).clamp_(-1, 1)


def source_capped_weights(sources: list[str], max_share: float) -> np.ndarray:
    """Per-clip draw probabilities: uniform over clips, then each source's total capped at ``max_share``.

    The cap is applied iteratively (capping one source raises the others' shares), and relaxed to ``1 / n_sources``
    when too few sources exist to satisfy it.
    """
    names = sorted(set(sources))
    cap = max(max_share, 1.0 / len(names))
    counts = {s: sources.count(s) for s in names}
    share = {s: counts[s] / len(sources) for s in names}
    capped: set[str] = set()
    while True:
        over = {s for s in names if s not in capped and share[s] > cap + 1e-12}
        if not over:
            break
        capped |= over
        rest = sum(counts[s] for s in names if s not in capped)
        free = 1.0 - cap * len(capped)
        share = {s: cap if s in capped else (counts[s] * free / rest if rest else 0.0) for s in names}
    w = np.array([share[s] / counts[s] for s in sources])
    return w / w.sum()

