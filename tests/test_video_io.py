"""Video I/O: containers, y4m, raw yuv, PNG folders, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from vtok.codec.media.info import VideoError
from vtok.codec.media.read import probe, read_video, yuv_geometry
from vtok.codec.media.write import write_video
from tests.conftest import smooth_clip


def test_mkv_is_lossless_and_y4m_png_mp4_write(tmp_path):
    clip = smooth_clip(4, 32, 48)
    write_video(tmp_path / "a.mkv", clip, 24)
    np.testing.assert_array_equal(read_video(tmp_path / "a.mkv"), clip)
    for name in ("a.y4m", "a.mp4"):
        write_video(tmp_path / name, clip, 24)
        back = read_video(tmp_path / name)
        assert back.shape == clip.shape and np.abs(back.astype(int) - clip).mean() < 6
    write_video(tmp_path / "frames", clip, 24)
    assert len(list((tmp_path / "frames").glob("*.png"))) == 4
    assert float(probe(tmp_path / "a.y4m").fps) == 24


def test_raw_yuv_from_name(tmp_path):
    w, h, t = 32, 16, 3
    data = np.random.default_rng(0).integers(0, 255, t * w * h * 3 // 2, dtype=np.uint8)
    p = tmp_path / f"clip_{w}x{h}_25.yuv"
    p.write_bytes(data.tobytes())
    assert yuv_geometry(p)[:2] == (w, h)
    info = probe(p)
    assert (info.width, info.height, info.frames, float(info.fps)) == (w, h, t, 25.0)
    assert read_video(p).shape == (t, h, w, 3)
    assert read_video(p, start=1, max_frames=1).shape == (1, h, w, 3)
    with pytest.raises(VideoError, match="size"):
        probe(tmp_path.joinpath("nosize.yuv"))


def test_errors(tmp_path):
    (tmp_path / "x.mp4").write_bytes(b"nope")
    with pytest.raises(VideoError, match="not a readable video"):
        read_video(tmp_path / "x.mp4")
    with pytest.raises(VideoError, match="does not exist"):
        write_video(tmp_path / "missing" / "a.mkv", smooth_clip(1, 8, 8), 25)
    with pytest.raises(VideoError, match="unsupported"):
        write_video(tmp_path / "a.gif", smooth_clip(1, 8, 8), 25)
    assert not list(tmp_path.glob(".*part*"))
