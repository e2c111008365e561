"""Audio: a file's audio streams read as compressed packets (``read_audio``), and muxed back into a video output by
stream copy (``AudioMuxer``), transcoded to AAC only where the output container cannot hold their codec.

Packets travel in ``.vtok`` files as ``bitstream.audio`` units; nothing here decodes audio except to transcode.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from vtok.bitstream.audio import NO_TS, AudioPacket, AudioStream, packet_seconds
from vtok.codec.media.info import VideoError

# Codecs FFmpeg's mov muxer lists as supported but writes only in its .mp4 mode ("opus only supported in MP4").
_MP4_ONLY = {"opus", "flac"}
_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


@dataclass
class AudioSource:
    """A file's audio streams as they are: descriptions, a Matroska ``description`` holding their codec parameters,
    and every compressed packet, timestamps made relative to the first video frame."""

    streams: list
    description: bytes
    packets: list

    def seconds(self, p) -> float:
        """A packet's presentation time in seconds (from the first video frame)."""
        return packet_seconds(p, self.streams)


def read_audio(path) -> AudioSource | None:
    """Every audio stream of a container file, without decoding (None: there is none, or the input is raw .yuv)."""
    if str(path).lower().endswith(".yuv"):
        return None
    import io

    import av
    from av.packet import packet_sidedata_type_from_literal

    try:
        with av.open(str(path)) as c:
            if not c.streams.audio:
                return None
            video = c.streams.video[0] if c.streams.video else None
            v0 = float(video.start_time * video.time_base) if video is not None and video.start_time is not None \
                else 0.0
            streams, firsts, packets = [], {}, []
            index = {s.index: i for i, s in enumerate(c.streams.audio)}
            for s in c.streams.audio:
                cc = s.codec_context
                tb = s.time_base
                streams.append(AudioStream(cc.name, cc.sample_rate or 0, cc.channels or 0, (tb.numerator, tb.denominator)))
            for pkt in c.demux(*c.streams.audio):
                if not pkt.size:
                    continue
                i = index[pkt.stream.index]
                tb = pkt.stream.time_base
                shift = round(v0 / tb)
                firsts.setdefault(i, pkt)
                side = tuple((int(packet_sidedata_type_from_literal(sd.data_type)), bytes(sd))
                             for sd in pkt.iter_sidedata())
                packets.append(AudioPacket(i, NO_TS if pkt.pts is None else pkt.pts - shift,
                                           NO_TS if pkt.dts is None else pkt.dts - shift, pkt.duration or 0,
                                           bool(pkt.is_keyframe), bytes(pkt), side))
            # The codec parameters (extradata, layout, delay) travel as a small Matroska file with each stream's first
            # packet: PyAV can only set them up for muxing from a stream it has opened.
            buf = io.BytesIO()
            with av.open(buf, "w", format="matroska") as out:
                tracks = [out.add_stream_from_template(s) for s in c.streams.audio]
                for i, pkt in sorted(firsts.items()):
                    pkt.stream = tracks[i]
                    out.mux(pkt)
            return AudioSource(streams, buf.getvalue(), packets)
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise VideoError(f"{path}: cannot read its audio ({e.__class__.__name__}: {e})") from None


class AudioMuxer:
    """The audio streams of one video output: a stream copy of each described stream, or an AAC encoder fed by its
    decoder where the container cannot hold the codec (listed in ``transcoded``).

    Args: ``container``: the output, a PyAV container open for writing; ``streams`` and ``description``: an
    ``AudioSource``'s; ``edit_list``: the container can drop a cut's pre-roll on playback (mp4/mov).
    """

    def __init__(self, container, streams, description: bytes, edit_list: bool):
        import io

        import av

        self._container, self.edit_list = container, edit_list
        self._desc = av.open(io.BytesIO(description), format="matroska")  # kept open: the templates live in it
        self._tracks: list = []
        self.transcoded: list[str] = []
        supported = container.supported_codecs
        if container.format.name == "mov":
            supported = supported - _MP4_ONLY
        for info, template in zip(streams, self._desc.streams.audio):
            if info.codec in supported:
                self._tracks.append((container.add_stream_from_template(template), None))
                continue
            dec = template.codec_context  # a decoder context with the stream's parameters
            layout = _DEFAULT_LAYOUTS.get(dec.channels, "stereo")  # "1 channels" (no order) → mono
            enc = container.add_stream("aac", rate=dec.sample_rate)
            enc.codec_context.layout = layout
            enc.codec_context.format = "fltp"
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=dec.sample_rate)
            self._tracks.append((enc, (dec, resampler)))
            self.transcoded.append(info.codec)

    def mux(self, packets, time_bases, shift: float = 0.0) -> None:
        """Mux ``packets`` (``AudioPacket``) with timestamps ``shift`` seconds earlier; ``time_bases[i]`` is stream
        ``i``'s ``(num, den)``."""
        import av
        from av.packet import PacketSideData

        for p in packets:
            num, den = time_bases[p.stream]
            tb = Fraction(num, den)
            off = round(Fraction(shift).limit_denominator(10 ** 6) / tb)
            if shift > 0 and not self.edit_list and p.pts != NO_TS and p.pts < off:
                # A cut's pre-roll packets (before its first frame) need an edit list to be decoded and then
                # dropped; Matroska has none, and its muxer would shift the whole track to hold them.
                continue
            out, transcode = self._tracks[p.stream]
            pkt = av.Packet(p.data)
            pkt.pts = None if p.pts == NO_TS else p.pts - off
            pkt.dts = None if p.dts == NO_TS else p.dts - off
            pkt.duration = p.duration
            pkt.time_base = tb
            pkt.is_keyframe = p.keyframe
            for kind, data in p.side_data:
                sd = PacketSideData(kind, len(data))
                sd.update(data)
                pkt.set_sidedata(sd)
            if transcode is None:
                pkt.stream = out
                self._container.mux(pkt)
                continue
            dec, resampler = transcode
            for frame in dec.decode(pkt):
                frame.pts = None
                for rf in resampler.resample(frame):
                    self._container.mux(out.encode(rf))

    def flush(self) -> None:
        """Drain the AAC encoders (before the container is closed)."""
        for out, transcode in self._tracks:
            if transcode is not None:
                self._container.mux(out.encode(None))

    def close(self) -> None:
        self._desc.close()
