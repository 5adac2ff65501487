"""Simulated RTSP cameras: :class:`CameraServer` serves encoded clips as live cameras.

The server is native (``vmscore._core.CameraServer``): one thread serves every camera and client
over RTSP with RTP over TCP (interleaved) or UDP, each camera looping its clip in real time with
continuous timestamps, and misbehaving on demand like the cameras an NVR meets in the field
(stalls, packet loss, timestamp jumps, broken SDP, the live555 stale-session bug, hostile
responses). This module composes it with the scene renderer and the clip files; it holds no
per-packet work.

Example::

    from vmscore.sim import CameraServer

    with CameraServer() as server:
        urls = server.add_scene_cameras(4, "schoolyard", seconds=10, size=(640, 360))
        server.stall("cam1", seconds=3)        # cam1 stops sending for 3 s
        print(server.stats("cam0").frames_sent)

Threading: a CameraServer may be used from any thread; calls wait for the server thread with the
GIL released.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal

import numpy as np

import vmscore
from vmscore._core import CameraServer as _NativeServer
from vmscore._core import CameraStats, SimClip
from vmscore.sim.encode import Codec, EncodedStream, Encoder, encode_frames

__all__ = ["FAULTS", "CameraServer", "CameraStats", "SimClip", "render_scene_streams"]

FAULTS: tuple[str, ...] = tuple(_NativeServer.fault_names())
"""Every fault name :meth:`CameraServer.set_fault` accepts."""

AuthMode = Literal["digest", "basic", "both"]
StreamSource = EncodedStream | SimClip | str | os.PathLike[str]


def render_scene_streams(
    scene: str,
    *,
    seconds: float,
    size: tuple[int, int],
    codec: Codec = "h264",
    fps: float = 15.0,
    bitrate_bps: int | None = None,
    gop: int | None = None,
    sub_size: tuple[int, int] | None = None,
    sub_bitrate_bps: int | None = None,
    seed: int = 0,
    preset: str = "veryfast",
    on_frame: Callable[[int, int], None] | None = None,
) -> tuple[EncodedStream, EncodedStream | None]:
    """Renders a scene once and encodes it like a camera's main (and optional sub) stream.

    Bitrates default to about 2 bits per pixel per second (4 Mbit/s at 1080p), GOPs to 2 s.
    ``on_frame(done, total)`` is called after each frame (for progress display).
    """
    from vmscore.sim.scenes import Scene

    w, h = size
    rate = bitrate_bps if bitrate_bps is not None else max(100_000, round(w * h * 2))
    keyint = gop if gop is not None else max(1, round(2 * fps))
    sc = Scene(scene, width=w, height=h, fps=fps, seconds=seconds, seed=seed)
    main = Encoder(
        codec=codec, width=w, height=h, fps=fps, gop=keyint, bitrate_bps=rate, preset=preset
    )
    sub = None
    if sub_size is not None:
        sw, sh = sub_size
        sub_rate = sub_bitrate_bps if sub_bitrate_bps is not None else max(64_000, sw * sh * 2)
        sub = Encoder(
            codec=codec,
            width=sw,
            height=sh,
            fps=fps,
            gop=keyint,
            bitrate_bps=sub_rate,
            preset=preset,
        )
    main_units = []
    sub_units = []
    for frame in sc.frames():
        main_units += main.encode_yuv420(frame.luma, frame.cb, frame.cr)
        if sub is not None and sub_size is not None:
            small = frame.downscaled(*sub_size)
            sub_units += sub.encode_yuv420(small.luma, small.cb, small.cr)
        if on_frame is not None:
            on_frame(frame.index + 1, sc.frame_count)
    main_units += main.flush()
    if sub is not None:
        sub_units += sub.flush()
    return main.stream(main_units), (sub.stream(sub_units) if sub is not None else None)


class CameraServer:
    """Simulated RTSP cameras on ``rtsp://host:port/<name>`` (and ``/<name>/sub``).

    ``port=0`` picks a free port (see :attr:`port`). With ``username``, every camera asks for
    Digest (or ``auth="basic"`` / ``"both"``) credentials on every method but OPTIONS.
    ``session_timeout_s`` is announced in the Session header; UDP sessions that send neither
    requests nor RTCP for that long are torn down. A TCP client whose socket is full gets its
    frames dropped until the next keyframe once ``client_queue_bytes`` are queued for it;
    ``send_buffer_bytes`` (SO_SNDBUF, 0: the kernel's autotuning) bounds what the kernel holds
    before that.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        username: str | None = None,
        password: str | None = None,
        auth: AuthMode = "digest",
        session_timeout_s: int = 60,
        client_queue_bytes: int = 8 << 20,
        send_buffer_bytes: int = 0,
        sender_report_interval_s: float = 5.0,
        seed: int = 1,
        max_payload_size: int = 1400,
    ) -> None:
        if password is not None and username is None:
            raise ValueError("a password needs a username")
        self._native = _NativeServer(
            host=host,
            port=port,
            username=username,
            password="" if username is not None and password is None else password,
            auth=auth,
            session_timeout_s=session_timeout_s,
            client_queue_bytes=client_queue_bytes,
            send_buffer_bytes=send_buffer_bytes,
            sender_report_interval_s=sender_report_interval_s,
            seed=seed,
        )
        self._username = username
        self._password = password or ""
        self._max_payload_size = max_payload_size
        # Clips made from an EncodedStream are shared by every camera given the same stream.
        self._clips: dict[int, tuple[EncodedStream, SimClip]] = {}
        self._cameras: dict[str, SimClip] = {}

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Stops serving: closes every connection and the server thread. Idempotent."""
        self._native.close()

    def __enter__(self) -> CameraServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def is_running(self) -> bool:
        return self._native.is_running

    @property
    def port(self) -> int:
        """The RTSP port (the chosen one when constructed with ``port=0``)."""
        return self._native.port

    @property
    def host(self) -> str:
        return self._native.host

    @property
    def udp_rtp_port(self) -> int:
        """The server's UDP port pair for RTP (this port) and RTCP (the next one)."""
        return self._native.udp_rtp_port

    # -- cameras ---------------------------------------------------------------------------

    def clip(self, source: StreamSource) -> SimClip:
        """The packetized clip for a stream (made once per stream object) or a clip directory's
        main stream."""
        if isinstance(source, SimClip):
            return source
        if isinstance(source, EncodedStream):
            cached = self._clips.get(id(source))
            if cached is not None and cached[0] is source:
                return cached[1]
            made = SimClip(
                source.codec,
                source.frames,
                fps=source.fps,
                max_payload_size=self._max_payload_size,
            )
            self._clips[id(source)] = (source, made)
            return made
        from vmscore.sim.files import load_clip

        return self.clip(load_clip(Path(source)).main)

    def add_camera(
        self,
        name: str,
        stream: StreamSource,
        sub: EncodedStream | SimClip | None = None,
        *,
        start_offset_s: float = 0.0,
        username: str | None = None,
        password: str | None = None,
        tcp: bool = True,
        udp: bool = True,
    ) -> str:
        """Adds a camera serving ``stream`` (an :class:`EncodedStream`, a :class:`SimClip` or a
        clip directory written by :func:`vmscore.sim.write_clip`, whose sub-stream is then served
        too unless ``sub`` is given); returns its URL (without credentials).

        ``start_offset_s``: how far into its clip the camera already is. ``username`` /
        ``password``: this camera's own credentials (``username=""`` means none, whatever the
        server's). ``tcp`` / ``udp``: the RTP transports it accepts (461 for the other).
        """
        if isinstance(stream, str | os.PathLike):
            from vmscore.sim.files import load_clip

            loaded = load_clip(Path(stream))
            main_clip = self.clip(loaded.main)
            if sub is None and loaded.sub is not None:
                sub = loaded.sub
        else:
            main_clip = self.clip(stream)
        sub_clip = self.clip(sub) if sub is not None else None
        url = self._native.add_camera(
            name,
            main_clip,
            sub_clip,
            start_offset_s=start_offset_s,
            username=username,
            password=password if username is not None else None,
            tcp=tcp,
            udp=udp,
        )
        self._cameras[name] = main_clip
        return url

    def add_cameras(
        self,
        count: int,
        stream: StreamSource,
        sub: EncodedStream | SimClip | None = None,
        *,
        prefix: str = "cam",
        tcp: bool = True,
        udp: bool = True,
    ) -> list[str]:
        """Adds ``count`` cameras ``<prefix>0`` .. sharing one clip, spread evenly over it so that
        they are not in lockstep (their keyframes do not all leave at once)."""
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        if isinstance(stream, str | os.PathLike):
            from vmscore.sim.files import load_clip

            loaded = load_clip(Path(stream))
            stream = loaded.main
            if sub is None:
                sub = loaded.sub
        main_clip = self.clip(stream)
        sub_clip = self.clip(sub) if sub is not None else None
        seconds = main_clip.duration_90k / 90_000
        return [
            self.add_camera(
                f"{prefix}{i}",
                main_clip,
                sub_clip,
                start_offset_s=seconds * i / count,
                tcp=tcp,
                udp=udp,
            )
            for i in range(count)
        ]

    def add_scene_cameras(
        self,
        count: int,
        scene: str = "schoolyard",
        *,
        seconds: float = 10.0,
        size: tuple[int, int] = (640, 360),
        codec: Codec = "h264",
        fps: float = 15.0,
        bitrate_bps: int | None = None,
        sub_size: tuple[int, int] | None = None,
        seed: int = 0,
        prefix: str = "cam",
        tcp: bool = True,
        udp: bool = True,
    ) -> list[str]:
        """Renders ``scene`` once and serves it as ``count`` cameras (see :meth:`add_cameras`)."""
        from vmscore.sim.scenes import SCENES

        if scene not in SCENES:
            raise ValueError(f"unknown scene {scene!r}; the catalogue has: {', '.join(SCENES)}")
        main, sub = render_scene_streams(
            scene,
            seconds=seconds,
            size=size,
            codec=codec,
            fps=fps,
            bitrate_bps=bitrate_bps,
            sub_size=sub_size,
            seed=seed,
        )
        return self.add_cameras(count, main, sub, prefix=prefix, tcp=tcp, udp=udp)

    def remove_camera(self, name: str) -> None:
        """Closes the camera's connections and removes it; KeyError when there is none."""
        if not self._native.remove_camera(name):
            raise KeyError(name)
        self._cameras.pop(name, None)

    def cameras(self) -> list[str]:
        return self._native.cameras()

    def url(self, name: str, *, sub: bool = False, with_credentials: bool = False) -> str:
        """``rtsp://host:port/<name>[/sub]``; with the server's credentials in it when asked."""
        url = self._native.url(name, sub)
        if with_credentials and self._username is not None:
            from urllib.parse import quote

            creds = f"{quote(self._username, safe='')}:{quote(self._password, safe='')}@"
            url = url.replace("rtsp://", "rtsp://" + creds, 1)
        return url

    def stats(self, name: str) -> CameraStats:
        return self._native.stats(name)

    def all_stats(self) -> dict[str, CameraStats]:
        return {s.name: s for s in self._native.all_stats()}

    # -- faults ----------------------------------------------------------------------------

    def set_fault(self, camera: str, fault: str, value: float | Sequence[bytes] = True) -> None:
        """Switches one fault of one camera (names in :data:`FAULTS`; 0 / False: off)."""
        self._native.set_fault(camera, fault, value)

    def clear_faults(self, camera: str) -> None:
        self._native.clear_faults(camera)

    def drop_connections(self, camera: str) -> None:
        """Closes every connection of the camera now (no TEARDOWN, no goodbye)."""
        self.set_fault(camera, "drop_connections")

    def stall(self, camera: str, seconds: float) -> None:
        """Sends no RTP or RTCP for ``seconds``; connections stay open and answer requests."""
        self.set_fault(camera, "stall", float(seconds))

    def corrupt_packets(self, camera: str, rate: float) -> None:
        """Flips one payload byte in this fraction of RTP packets (0 stops)."""
        self.set_fault(camera, "corrupt_packets", float(rate))

    def lose_packets(self, camera: str, rate: float) -> None:
        """Skips this fraction of RTP packets; their sequence numbers are spent (0 stops)."""
        self.set_fault(camera, "lose_packets", float(rate))

    def timestamp_jump(self, camera: str, ticks: int) -> None:
        """Adds ``ticks`` (90 kHz) to every later RTP timestamp; negative jumps go backwards."""
        self.set_fault(camera, "timestamp_jump", float(ticks))

    def sdp_without_parameter_sets(self, camera: str, on: bool = True) -> None:
        """DESCRIBE answers without sprop-parameter-sets (sprop-vps/sps/pps for H.265)."""
        self.set_fault(camera, "sdp_without_parameter_sets", on)

    def wrong_parameter_sets(
        self,
        camera: str,
        units: Sequence[bytes] | None = None,
        *,
        size: tuple[int, int] = (176, 144),
    ) -> list[bytes]:
        """DESCRIBE announces parameter sets that are not the stream's: ``units`` as given, or by
        default those of the same codec at another ``size``. Returns what the SDP now carries."""
        if units is None:
            codec = self._codec_of(camera)
            w, h = size
            made = encode_frames(
                [np.full((h, w), 128, np.uint8)],
                codec=codec,
                width=w,
                height=h,
                fps=15.0,
                gop=1,
                bitrate_bps=100_000,
            )
            units = vmscore.parameter_sets(made.frames[0].data, codec)
        listed = [bytes(u) for u in units]
        if not listed:
            raise ValueError("give at least one NAL unit (or use sdp_without_parameter_sets)")
        self.set_fault(camera, "sdp_parameter_sets", listed)
        return listed

    def slow_responses(self, camera: str, delay_ms: float) -> None:
        """Every RTSP response waits ``delay_ms`` (0 stops)."""
        self.set_fault(camera, "slow_responses", float(delay_ms))

    def partial_responses(self, camera: str, pause_ms: float = 20.0) -> None:
        """RTSP responses leave in 8-byte pieces ``pause_ms`` apart (0 stops)."""
        self.set_fault(camera, "partial_responses", float(pause_ms))

    def slowloris(self, camera: str, ms_per_byte: float = 100.0) -> None:
        """RTSP responses leave one byte every ``ms_per_byte`` (0 stops)."""
        self.set_fault(camera, "slowloris", float(ms_per_byte))

    def rtcp_before_play(self, camera: str, on: bool = True) -> None:
        """An RTCP sender report precedes the PLAY response (recent Reolink firmware)."""
        self.set_fault(camera, "rtcp_before_play", on)

    def bogus_rtp_info(self, camera: str, on: bool = True) -> None:
        """RTP-Info says ``seq=0;rtptime=-1`` (Tapo, OMNY)."""
        self.set_fault(camera, "bogus_rtp_info", on)

    def bogus_transport_ssrc(self, camera: str, on: bool = True) -> None:
        """The SETUP Transport names an SSRC the packets do not carry."""
        self.set_fault(camera, "bogus_transport_ssrc", on)

    def annexb_in_payload(self, camera: str, on: bool = True) -> None:
        """Access units go out as one NAL unit with Annex-B start codes inside (V380)."""
        self.set_fault(camera, "annexb_in_payload", on)

    def marker_on_sei(self, camera: str, on: bool = True) -> None:
        """The marker bit also on packets ending in SEI or parameter sets (mid-frame)."""
        self.set_fault(camera, "marker_on_sei", on)

    def ignore_keepalives(self, camera: str, on: bool = True) -> None:
        """Once playing, OPTIONS and GET_PARAMETER get no answer (GW Security)."""
        self.set_fault(camera, "ignore_keepalives", on)

    def live555_tool(self, camera: str, stale_s: float = 65.0) -> None:
        """SDP ``a=tool:LIVE555 Streaming Media v2013.04.08``, and a TCP session dropped without
        TEARDOWN lives on for ``stale_s``: its packets (own SSRC, old channels) go into the next
        connection that addresses the camera, until a TEARDOWN names it (0 stops)."""
        self.set_fault(camera, "live555_tool", float(stale_s))

    def oversized_headers(self, camera: str, size_bytes: int = 64 * 1024) -> None:
        """Every response carries padding header lines of ``size_bytes`` in total (0 stops)."""
        self.set_fault(camera, "oversized_headers", float(size_bytes))

    def endless_response(self, camera: str, on: bool = True) -> None:
        """Responses whose header section never ends."""
        self.set_fault(camera, "endless_response", on)

    def huge_body(self, camera: str, content_length: int = 100_000_000) -> None:
        """Responses declare this Content-Length and trickle filler after it (0 stops)."""
        self.set_fault(camera, "huge_body", float(content_length))

    def garbage_interleaved(self, camera: str, rate: float = 0.2) -> None:
        """Before this fraction of access units: a '$' frame on a channel never set up, a frame
        too short for RTP, or bytes that are not interleaved framing (TCP; 0 stops)."""
        self.set_fault(camera, "garbage_interleaved", float(rate))

    def _codec_of(self, camera: str) -> Codec:
        clip = self._cameras.get(camera)
        if clip is None:
            raise ValueError(f"no camera {camera!r}")
        return "h264" if clip.codec == "h264" else "h265"
