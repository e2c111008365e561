"""The one place that opens video and audio files: ``read`` (frames from anything FFmpeg reads, raw ``.yuv``,
standard input; the video files of folders), ``write`` (``.mkv``/``.mp4``/``.y4m``/PNG outputs, written whole or
not at all), ``audio`` (a file's audio packets, and muxing them into an output) and ``info`` (what they share).

Frames at this edge are uint8 RGB ``(T, H, W, 3)``. May import: ``codec.media`` and ``bitstream`` (audio units).
"""
