"""What a ``.vtok`` file holds, read from its bytes alone (``vtok info``): header fields, units, sizes, audio.

No model is needed: the GOP payloads' cross-entropy prefix (docs/BITSTREAM.md) tells how far the range coder's output
is from the prior's information content, and the audio units are counted apart so that bpp is the video's. A damaged
file is read as far as it is intact: its damaged stretches are listed (``damage``), not the first one alone.
"""

from __future__ import annotations

import os

from vtok.bitstream.audio import unpack_packets, unpack_streams
from vtok.bitstream.container import UNIT_OVERHEAD, UnitType, unpack_gop_payload
from vtok.bitstream.reader import ContainerReader


def file_info(path) -> dict:
    """Header fields, per-GOP sizes, audio streams and rates of the ``.vtok`` file at ``path``."""
    with open(path, "rb") as f:
        return stream_info(f, os.path.getsize(path))


def stream_info(f, size: int) -> dict:
    """``file_info`` of an open binary ``.vtok`` stream of ``size`` bytes."""
    reader = ContainerReader(f)
    h = reader.header
    found = reader.scan()
    payload_bits, ce, gops = 0, 0.0, []
    for u in found.units:
        unit_ce, words = unpack_gop_payload(reader.read_payload(u))
        payload_bits += len(words) * 8
        ce += unit_ce
        gops.append({"index": u.gop_index, "first_frame": u.first_frame, "frames": u.frames,
                     "bytes": u.payload_size})
    audio = []
    audio_bytes = sum(u.payload_size + UNIT_OVERHEAD for u in reader.audio_units)
    if reader.audio_units and reader.audio_units[0].kind == UnitType.AUDIO_STREAMS:
        streams, _ = unpack_streams(reader.read_payload(reader.audio_units[0]))
        sizes = [0] * len(streams)
        for au in reader.audio_units[1:]:
            for p in unpack_packets(reader.read_payload(au), len(streams)):
                sizes[p.stream] += len(p.data)
        audio = [{"codec": st.codec, "sample_rate": st.sample_rate, "channels": st.channels,
                  "packet_bytes": n} for st, n in zip(streams, sizes)]
    video_bytes = size - audio_bytes
    frames = h.frames if found.complete else sum(g["frames"] for g in gops)
    return {"width": h.width, "height": h.height, "coded_width": h.coded_width, "coded_height": h.coded_height,
            "frames": h.frames, "fps": f"{h.fps_num}/{h.fps_den}",
            "bits_per_token": h.bits_per_token, "model_bits": h.model_bits, "gop": h.gop,
            "coder": h.coder.name, "perfect": h.perfect, "prob_bits": h.prob_bits, "rate": h.rate,
            "pixel_format": h.pixel_format.name, "model_id": h.model_id, "format_version": h.version,
            "colour": {"matrix": h.matrix, "full_range": h.full_range, "primaries": h.primaries,
                       "transfer": h.transfer},
            "intact_frames": frames, "file_bytes": size, "video_bytes": video_bytes, "audio_bytes": audio_bytes, "audio_streams": audio,
            "payload_bits": payload_bits, "cross_entropy_bits": ce,
            "bpp": video_bytes * 8 / max(1, frames * h.width * h.height), "gop_units": gops,
            "complete": found.complete, "damage": [{"start": d.start, "end": d.end, "reason": d.reason}
                                                   for d in found.damage]}
