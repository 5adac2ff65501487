"""RTSP and SDP wire formats: the incremental connection parser, message formatting, header fields,
URLs, Digest/Basic authentication with our own MD5, and camera SDPs down to parameter sets.

Samples are written the way the named cameras and servers send them (headers, attribute order,
spacing and quirks), with real parameter sets from libx264 / libx265. FFmpeg is a live peer: its
RTP muxer writes session descriptions that must parse to the parameter sets it encoded. Every quirk
of the camera table in the engine notes that concerns parsing has a test named after the camera.
Hostile input must raise vmscore.BitstreamError with a message that says what was wrong.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import random
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import vmscore
from vmscore import BitstreamError
from vmscore import _core as core

PROPERTY = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Parameter sets written by libx264 / libx265 (ffmpeg -flags +global_header -f rtp), as cameras put
# them in sprop-parameter-sets: 1920x1080 Main, 2560x1440 High, 704x480 High, H.265 2688x1520 Main.
SPS_1080P, PPS_1080P = "Z01AKNoB4AiflwEQAAADABAAAAMB4PGDKg==", "aO8PyA=="
SPS_1440P, PPS_1440P = "Z2QAMqy0AUAFrYCIAAADAAgAAAMBQHjBlQ==", "aO8Pyw=="
SPS_480P, PPS_480P = "Z2QAFqy0BYHtgIgAAAMACAAAAwDweLF1", "aO8Pyw=="
VPS_1520P = "QAEMAf//AWAAAAMAkAAAAwAAAwCWlZQJ"
SPS_1520P = "QgEBAWAAAAMAkAAAAwAAAwCWoAFQIAXxZZWVKTC8BaAgAAADACAAAAMDIQ=="
PPS_1520P = "RAHAc8GJ"
H264_1080P_SPROP = f"sprop-parameter-sets={SPS_1080P},{PPS_1080P}"
H265_SPROP = f"sprop-vps={VPS_1520P};sprop-sps={SPS_1520P};sprop-pps={PPS_1520P}"
AAC_16K_FMTP = (
    "streamtype=5;profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;"
    "config=1408"
)


H264_MEDIA = "v=0\nm=video 0 RTP/AVP 96\na=rtpmap:96 H264/90000\n"


def b64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def crlf(text: str) -> str:
    """Text written with newlines in this file, sent with CRLF line ends as cameras do."""
    return text.replace("\n", "\r\n")


def response(head: str, body: str = "", *, eol: str = "\r\n") -> bytes:
    """A response or request from a start line and headers; Content-Length follows the body."""
    lines = head.strip("\n").split("\n")
    if body:
        lines.append(f"Content-Length: {len(body.encode())}")
    return (eol.join(lines) + eol + eol + body).encode()


def parse_one(data: bytes, **limits: int) -> core.RtspMessage:
    item = core.parse_rtsp(data, **limits)
    assert isinstance(item, core.RtspMessage), item
    assert item.wire_size == len(data)
    return item


Item = core.RtspMessage | tuple[str, int, bytes]


def parse_stream(data: bytes) -> tuple[list[Item], int]:
    """Parses a connection's bytes front to back: the items and the offset where NeedMore began."""
    items: list[Item] = []
    off = 0
    while True:
        item = core.parse_rtsp(data[off:])
        if item is None:
            return items, off
        if isinstance(item, tuple):
            off += 4 + len(item[2])
        else:
            off += item.wire_size
        items.append(item)


def parse_chunked(data: bytes, cuts: list[int]) -> tuple[list[Item], int]:
    """The same through a connection buffer that receives the bytes in pieces."""
    items: list[Item] = []
    buffer = b""
    fed = 0
    for cut in [*sorted(cuts), len(data)]:
        buffer += data[fed:cut]
        fed = max(fed, cut)
        got, used = parse_stream(buffer)
        items += got
        buffer = buffer[used:]
    return items, len(data) - len(buffer)


def summary(item: Item) -> tuple[object, ...]:
    if isinstance(item, tuple):
        return item
    return (
        item.is_request,
        item.method,
        item.uri,
        item.status,
        item.reason,
        item.headers,
        item.body,
    )


# --- real-world exchanges ----------------------------------------------------------------------

AXIS_SDP = crlf(f"""v=0
o=- 1870434457383527811 1 IN IP4 10.1.1.20
s=Session streamed with GStreamer
i=rtsp-server
t=0 0
a=tool:GStreamer
a=type:broadcast
a=range:npt=now-
a=control:rtsp://10.1.1.20/axis-media/media.amp?videocodec=h264&resolution=1920x1080
m=video 0 RTP/AVP 96
c=IN IP4 0.0.0.0
b=AS:50000
a=rtpmap:96 H264/90000
a=fmtp:96 packetization-mode=1;profile-level-id=4d4028;sprop-parameter-sets={SPS_1080P},{PPS_1080P}
a=ts-refclk:local
a=mediaclk:sender
a=recvonly
a=control:rtsp://10.1.1.20/axis-media/media.amp/stream=0?videocodec=h264&resolution=1920x1080
a=framerate:30.000000
a=transform:1.000000,0.000000,0.000000;0.000000,1.000000,0.000000;0.000000,0.000000,1.000000
""")

AXIS_DESCRIBE = response(
    """RTSP/1.0 200 OK
CSeq: 3
Content-Type: application/sdp
Content-Base: rtsp://10.1.1.20/axis-media/media.amp/
Server: GStreamer RTSP server
Date: Wed, 03 Jun 2026 09:14:27 GMT""",
    AXIS_SDP,
)

BOSCH_SDP = crlf(f"""v=0
o=- 0 0 IN IP4 10.1.1.30
s=LIVE VIEW
c=IN IP4 0.0.0.0
t=0 0
a=control:rtsp://10.1.1.30:554/
m=video 0 RTP/AVP 35
a=rtpmap:35 H264/90000
a=control:rtsp://10.1.1.30:554/video
a=recvonly
a=fmtp:35 packetization-mode=1;profile-level-id=640032;sprop-parameter-sets={SPS_1440P},{PPS_1440P}
m=audio 0 RTP/AVP 0
a=control:rtsp://10.1.1.30:554/audio
a=recvonly
""")

HIKVISION_SDP = crlf(f"""v=0
o=- 1717481285291561 1717481285291561 IN IP4 192.168.1.64
s=Media Presentation
e=NONE
b=AS:5100
t=0 0
a=control:rtsp://192.168.1.64:554/Streaming/Channels/101/?transportmode=unicast&profile=Profile_1
m=video 0 RTP/AVP 96
c=IN IP4 0.0.0.0
b=AS:5000
a=recvonly
a=x-dimensions:1920,1080
a=control:rtsp://192.168.1.64:554/Streaming/Channels/101/trackID=1?transportmode=unicast&profile=Profile_1
a=rtpmap:96 H264/90000
a=fmtp:96 profile-level-id=4D4028; packetization-mode=1; {H264_1080P_SPROP}
m=application 0 RTP/AVP 107
c=IN IP4 0.0.0.0
b=AS:50
a=recvonly
a=control:rtsp://192.168.1.64:554/Streaming/Channels/101/trackID=3?transportmode=unicast&profile=Profile_1
a=rtpmap:107 vnd.onvif.metadata/90000
a=Media_header:MEDIAINFO=494D4B48010200000400000100000000000000000000000000000000000000000000000000000000;
a=appversion:1.0
""")

HIKVISION_DESCRIBE = response(
    """RTSP/1.0 200 OK
CSeq: 4
Content-Type: application/sdp
Content-Base: rtsp://192.168.1.64:554/Streaming/Channels/101/
Date:  Tue, Jun 04 2026 06:08:05 GMT""",
    HIKVISION_SDP,
)

# Hikvision iDS / DS-2CD3641G2-IZS: a space after "ssrc=".
HIKVISION_SETUP = response("""RTSP/1.0 200 OK
CSeq: 5
Session: 1470297414;timeout=60
Transport: RTP/AVP/TCP;unicast;interleaved=0-1;ssrc= 4b07c3d9;mode="play"
Date:  Tue, Jun 04 2026 06:08:05 GMT""")

HIKVISION_PLAY = response("""RTSP/1.0 200 OK
CSeq: 6
Session: 1470297414
RTP-Info: url=rtsp://192.168.1.64:554/Streaming/Channels/101/trackID=1?transportmode=unicast&profile=Profile_1;seq=31208;rtptime=2146371823
Date:  Tue, Jun 04 2026 06:08:05 GMT""")

DAHUA_SDP = crlf(f"""v=0
o=- 2229345812 2229345812 IN IP4 0.0.0.0
s=Media Server
c=IN IP4 0.0.0.0
t=0 0
a=control:*
a=packetization-supported:DH
a=rtppayload-supported:DH
a=range:npt=now-
m=video 0 RTP/AVP 96
a=control:trackID=0
a=framerate:15.000000
a=rtpmap:96 H264/90000
a=fmtp:96 packetization-mode=1;profile-level-id=640016;sprop-parameter-sets={SPS_480P},{PPS_480P}
a=recvonly
m=audio 0 RTP/AVP 97
a=control:trackID=1
a=rtpmap:97 MPEG4-GENERIC/16000
a=fmtp:97 {AAC_16K_FMTP}
a=recvonly
m=application 0 RTP/AVP 107
a=control:trackID=4
a=rtpmap:107 vnd.onvif.metadata/90000
a=recvonly
""")

DAHUA_DESCRIBE = response(
    """RTSP/1.0 200 OK
CSeq: 3
x-Accept-Dynamic-Rate: 1
Content-Base: rtsp://192.168.1.108:554/cam/realmonitor?channel=1&subtype=1/
Cache-Control: must-revalidate
Content-Type: application/sdp""",
    DAHUA_SDP,
)

DAHUA_H265_SDP = crlf(f"""v=0
o=- 2229345813 2229345813 IN IP4 0.0.0.0
s=Media Server
c=IN IP4 0.0.0.0
t=0 0
a=control:*
a=range:npt=now-
m=video 0 RTP/AVP 98
a=control:trackID=0
a=framerate:20.000000
a=rtpmap:98 H265/90000
a=fmtp:98 profile-id=1;sprop-sps={SPS_1520P};sprop-pps={PPS_1520P};sprop-vps={VPS_1520P}
a=recvonly
m=audio 0 RTP/AVP 8
a=control:trackID=1
a=rtpmap:8 PCMA/16000
a=recvonly
""")

# Reolink (live555 2013): the tool line, and the SSRC only in PLAY's RTP-Info.
REOLINK_SDP = crlf(f"""v=0
o=- 1717489012318826 1 IN IP4 192.168.1.50
s=Session streamed by "preview"
i=h264Preview_01_main
t=0 0
a=tool:LIVE555 Streaming Media v2013.04.08
a=type:broadcast
a=control:*
a=range:npt=0-
a=x-qt-text-nam:Session streamed by "preview"
a=x-qt-text-inf:h264Preview_01_main
m=video 0 RTP/AVP 96
c=IN IP4 0.0.0.0
b=AS:500
a=rtpmap:96 H264/90000
a=range:npt=0-
a=fmtp:96 packetization-mode=1;profile-level-id=640032;sprop-parameter-sets={SPS_1440P},{PPS_1440P}
a=control:trackID=1
m=audio 0 RTP/AVP 97
c=IN IP4 0.0.0.0
b=AS:256
a=rtpmap:97 MPEG4-GENERIC/16000
a=fmtp:97 {AAC_16K_FMTP}; profile=1;
a=control:trackID=2
""")

REOLINK_PLAY = response("""RTSP/1.0 200 OK
CSeq: 6
Date: Tue, Jun 04 2026 07:41:03 GMT
Range: npt=0.000-
Session: 7A3C19E0
RTP-Info: url=rtsp://192.168.1.50/h264Preview_01_main/trackID=1;seq=18121;rtptime=2951741502,url=rtsp://192.168.1.50/h264Preview_01_main/trackID=2;seq=7064;rtptime=881230477;ssrc=5b0ae4c2""")

# GStreamer's rtsp-server (gst-rtsp-server test-launch), control relative to Content-Base.
GSTREAMER_SDP = crlf(f"""v=0
o=- 1188340656180883 1 IN IP4 127.0.0.1
s=Session streamed with GStreamer
i=rtsp-server
t=0 0
a=tool:GStreamer
a=type:broadcast
a=range:npt=now-
a=control:rtsp://127.0.0.1:8554/test
m=video 0 RTP/AVP 96
c=IN IP4 0.0.0.0
a=rtpmap:96 H264/90000
a=framerate:30
a=fmtp:96 packetization-mode=1;{H264_1080P_SPROP};profile-level-id=4d4028;level-asymmetry-allowed=1
a=control:stream=0
a=ts-refclk:local
a=mediaclk:sender
""")

# Anjvision: a Content-Base without a scheme, H.265 parameter sets, "a=x-framerate: 5".
ANJVISION_DESCRIBE = response(
    """RTSP/1.0 200 OK
CSeq: 2
Content-Type: application/sdp
Content-Base: 192.168.1.10:554/stream0/""",
    f"""v=0
o=- 1109162014219182 1109162014219192 IN IP4 x.y.z.w
s=RTSP/RTP stream from anjvision ipcamera
e=NONE
c=IN IP4 0.0.0.0
a=tool:LIVE555 Streaming Media v2011.05.25 CHAM.LI@ANJVISION.COM
t=0 0
a=range:npt=0-
a=control:*
m=video 0 RTP/AVP 96
a=rtpmap:96 H265/90000
a=control:trackID=1
a=fmtp:96 packetization-mode=0;profile-space=0;profile-id=1;tier-flag=0;level-id=150;{H265_SPROP}
a=x-dimensions: 2688, 1520
a=x-framerate: 5
""",
    eol="\n",
)

# TP-Link: a third media section in a syntax of its own.
TPLINK_SDP = f"""v=0
o=- 14665860 31787219 1 IN IP4 192.168.0.60
s=Session streamed by "TP-LINK RTSP Server"
t=0 0
m=video 0 RTP/AVP 96
c=IN IP4 0.0.0.0
b=AS:4096
a=range:npt=0-
a=control:track1
a=rtpmap:96 H265/90000
a=fmtp:96 profile-space=0;profile-id=1;tier-flag=0;level-id=150;{H265_SPROP}
m=audio 0 RTP/AVP 8
a=rtpmap:8 PCMA/8000
a=control:track2
m=application/TP-LINK 0 RTP/AVP smart/1/90000
a=rtpmap:95 TP-LINK/90000
a=control:track3
"""

# Ubiquiti (evostream): an empty fmtp, mixed-case fmtp names, a trailing ';'.
UBIQUITI_AAC_FMTP = (
    "streamtype=5; profile-level-id=15; mode=AAC-hbr; config=1188; SizeLength=13; IndexLength=3; "
    "IndexDeltaLength=3;"
)
UBIQUITI_SDP = f"""v=0
o=- 221 0 IN IP4 192.168.0.20
s=F0A1B2C3D4E5_0
u=www.evostream.com
e=contact@evostream.com
c=IN IP4 192.168.0.20
t=0 0
a=recvonly
a=control:*
a=range:npt=now-
m=audio 0 RTP/AVP 96
a=recvonly
a=rtpmap:96 mpeg4-generic/48000/1
a=control:trackID=0
a=fmtp:96 {UBIQUITI_AAC_FMTP}
m=audio 0 RTP/AVP 96
a=recvonly
a=rtpmap:96 opus/48000/2
a=control:trackID=1
a=fmtp:96
m=video 0 RTP/AVP 97
a=recvonly
a=control:trackID=2
a=rtpmap:97 H264/90000
a=fmtp:97 profile-level-id=4d4028; packetization-mode=1; {H264_1080P_SPROP}
"""


class TestCameraExchanges:
    def test_axis_describe_gives_the_stream_its_parameter_sets_and_absolute_control(self) -> None:
        msg = parse_one(AXIS_DESCRIBE)
        assert (msg.status, msg.reason, msg.cseq) == (200, "OK", 3)
        assert msg.header("content-type") == "application/sdp"
        sdp = core.parse_sdp(msg.body)
        assert sdp.warnings == []
        assert sdp.tool == "GStreamer" and sdp.range == "npt=now-"
        (video,) = sdp.media
        assert (video.type, video.payload_type, video.encoding, video.clock_rate) == (
            "video",
            96,
            "H264",
            90000,
        )
        assert video.framerate == 30.0 and video.bandwidth_kbps == 50000
        assert video.direction == "recvonly"
        # The transform attribute holds ',' and ';': it must not disturb anything else.
        assert (video.attribute("transform") or "").startswith("1.000000,0.000000,0.000000;")
        units, warnings = video.parameter_sets()
        assert warnings == [] and units == [b64(SPS_1080P), b64(PPS_1080P)]
        sps = vmscore.parse_sps(units[0], "h264")
        assert (sps.width, sps.height, sps.profile_idc) == (1920, 1080, 77)
        assert video.profile_level_id == 0x4D4028 and video.packetization_mode == 1
        base = core.content_base(msg, "rtsp://10.1.1.20/axis-media/media.amp")
        assert core.resolve_control(base, video.control) == (
            "rtsp://10.1.1.20/axis-media/media.amp/stream=0?videocodec=h264&resolution=1920x1080"
        )

    def test_bosch_dynamic_type_35_and_static_pcmu_without_rtpmap(self) -> None:
        sdp = core.parse_sdp(BOSCH_SDP)
        video, audio = sdp.media
        assert (video.payload_type, video.encoding, video.codec) == (35, "H264", "h264")
        assert vmscore.parse_sps(video.parameter_sets()[0][0], "h264").width == 2560
        assert (audio.payload_type, audio.encoding, audio.clock_rate, audio.channels) == (
            0,
            "PCMU",
            8000,
            1,
        )
        assert core.resolve_control("rtsp://10.1.1.30/", audio.control) == (
            "rtsp://10.1.1.30:554/audio"
        )

    def test_hikvision_describe_setup_play(self) -> None:
        describe = parse_one(HIKVISION_DESCRIBE)
        assert describe.header("Date") == "Tue, Jun 04 2026 06:08:05 GMT"
        sdp = core.parse_sdp(describe.body)
        assert sdp.bandwidth_kbps == 5100
        video, metadata = sdp.media
        assert video.fmtp_param("PACKETIZATION-MODE") == "1"  # fmtp names are case-insensitive
        assert video.attribute("x-dimensions") == "1920,1080"
        assert (metadata.type, metadata.encoding) == ("application", "VND.ONVIF.METADATA")
        base = core.content_base(describe, "rtsp://192.168.1.64:554/Streaming/Channels/101")
        assert base == "rtsp://192.168.1.64:554/Streaming/Channels/101/"
        assert core.resolve_control(base, video.control) == video.control  # absolute
        setup = parse_one(HIKVISION_SETUP)
        transport = core.parse_transport(setup.header("Transport") or "")
        assert transport.tcp and transport.interleaved == (0, 1)
        assert transport.ssrc == 0x4B07C3D9
        assert transport.mode == "PLAY"
        assert core.parse_session(setup.header("Session") or "") == ("1470297414", 60)
        play = parse_one(HIKVISION_PLAY)
        (info,) = core.parse_rtp_info(play.header("RTP-Info") or "")
        assert info.url == video.control
        assert (info.seq, info.rtptime) == (31208, 2146371823)

    def test_dahua_query_base_aac_and_metadata(self) -> None:
        describe = parse_one(DAHUA_DESCRIBE)
        assert describe.header("X-ACCEPT-DYNAMIC-RATE") == "1"
        sdp = core.parse_sdp(describe.body)
        video, audio, metadata = sdp.media
        base = core.content_base(describe, "rtsp://192.168.1.108:554/cam/realmonitor?channel=1")
        assert core.resolve_control(base, sdp.control) == base  # "*"
        # Appended to the base as live555 and FFmpeg do, query included.
        assert core.resolve_control(base, video.control) == (
            "rtsp://192.168.1.108:554/cam/realmonitor?channel=1&subtype=1/trackID=0"
        )
        assert video.framerate == 15.0
        assert vmscore.parse_sps(video.parameter_sets()[0][0], "h264").width == 704
        aac = audio.aac_config()
        assert aac is not None
        assert (aac.object_type, aac.sample_rate, aac.channels) == (2, 16000, 1)
        assert (aac.mode, aac.size_length, aac.index_length, aac.index_delta_length) == (
            "AAC-hbr",
            13,
            3,
            3,
        )
        assert aac.audio_specific_config == b"\x14\x08"
        assert metadata.clock_rate == 90000 and metadata.codec is None
        assert video.aac_config() is None

    def test_dahua_h265_parameter_sets_in_any_order_and_pcma_at_16k(self) -> None:
        video, audio = core.parse_sdp(DAHUA_H265_SDP).media
        assert video.codec == "h265"
        units, warnings = video.parameter_sets()
        assert warnings == []
        assert units == [b64(VPS_1520P), b64(SPS_1520P), b64(PPS_1520P)]  # VPS, SPS, PPS
        sps = vmscore.parse_sps(units[1], "h265")
        assert (sps.width, sps.height) == (2688, 1520)
        assert video.sprop_max_don_diff == 0
        # The rtpmap overrides the static table's 8000 Hz.
        assert (audio.encoding, audio.clock_rate) == ("PCMA", 16000)

    def test_reolink_live555_2013_has_the_tcp_bug_and_ssrc_comes_with_play(self) -> None:
        sdp = core.parse_sdp(REOLINK_SDP)
        assert sdp.live555_version == 20130408 and sdp.has_live555_tcp_bug
        video, audio = sdp.media
        assert video.control == "trackID=1"
        # "config=1408; profile=1;" with a space and a trailing ';'
        assert audio.fmtp_param("profile") == "1"
        aac = audio.aac_config()
        assert aac is not None and aac.sample_rate == 16000
        play = parse_one(REOLINK_PLAY)
        first, second = core.parse_rtp_info(play.header("rtp-info") or "")
        assert (first.seq, first.rtptime, first.ssrc) == (18121, 2951741502, None)
        assert second.url.endswith("trackID=2") and second.ssrc == 0x5B0AE4C2

    def test_gstreamer_rtsp_server_relative_control(self) -> None:
        sdp = core.parse_sdp(GSTREAMER_SDP)
        (video,) = sdp.media
        assert video.framerate == 30.0
        assert video.fmtp_param("level-asymmetry-allowed") == "1"
        assert core.resolve_control("rtsp://127.0.0.1:8554/test/", video.control) == (
            "rtsp://127.0.0.1:8554/test/stream=0"
        )
        # Without Content-Base the request URL is the base and gets the '/' the servers expect.
        assert core.resolve_control("rtsp://127.0.0.1:8554/test", video.control) == (
            "rtsp://127.0.0.1:8554/test/stream=0"
        )
        assert not sdp.has_live555_tcp_bug and sdp.live555_version is None

    def test_anjvision_schemeless_content_base_and_bare_lf(self) -> None:
        msg = parse_one(ANJVISION_DESCRIBE)
        base = core.content_base(msg, "rtsp://192.168.1.10:554/stream0")
        assert base == "rtsp://192.168.1.10:554/stream0/"
        sdp = core.parse_sdp(msg.body)
        (video,) = sdp.media
        assert core.resolve_control(base, video.control) == (
            "rtsp://192.168.1.10:554/stream0/trackID=1"
        )
        assert video.framerate == 5.0 and video.packetization_mode == 0
        assert sdp.live555_version == 20110525 and sdp.has_live555_tcp_bug
        assert len(video.parameter_sets()[0]) == 3

    def test_longse_trailing_whitespace_in_cseq(self) -> None:
        msg = parse_one(
            b"RTSP/1.0 401 Unauthorized\r\nCSeq: 1 \r\nServer: Rtsp Server 1920*1080*20*2048\r\n"
            b'WWW-Authenticate: Digest realm="Surveillance Server", nonce="47201139"\r\n\r\n'
        )
        assert msg.cseq == 1 and msg.header("CSeq") == "1"
        (challenge,) = core.parse_www_authenticate(msg.header("www-authenticate") or "")
        assert (challenge.scheme, challenge.realm, challenge.nonce) == (
            "digest",
            "Surveillance Server",
            "47201139",
        )

    def test_missing_content_type_on_describe_still_parses(self) -> None:
        msg = parse_one(response("RTSP/1.0 200 OK\nCSeq: 2", GSTREAMER_SDP))
        assert msg.header("Content-Type") is None
        assert core.parse_sdp(msg.body).media[0].encoding == "H264"

    def test_ffmpeg_rtp_muxer_sdp_parses_to_what_it_encoded(self, tmp_path: Path) -> None:
        exe = shutil.which("ffmpeg")
        assert exe, "ffmpeg is missing: run scripts/install-test-deps"
        for codec, encoder, extra in (
            ("h264", "libx264", []),
            ("h265", "libx265", ["-x265-params", "log-level=error"]),
        ):
            sdp_file = tmp_path / f"{codec}.sdp"
            es = tmp_path / f"{codec}.es"
            # Two outputs of the same source and settings: RTP, whose SDP carries the parameter
            # sets out of band, and an elementary stream carrying them in band. The RTP packets go
            # to the discard port.
            subprocess.run(
                [
                    *(exe, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=352x288:rate=25"),
                    *("-frames:v", "2", "-c:v", encoder, "-flags", "+global_header", *extra),
                    *("-f", "rtp", "rtp://127.0.0.1:9", "-sdp_file", str(sdp_file)),
                    *("-frames:v", "2", "-c:v", encoder, *extra),
                    *("-f", "h264" if codec == "h264" else "hevc", "-y", str(es)),
                ],
                check=True,
                timeout=120,
            )
            sdp = core.parse_sdp(sdp_file.read_text())
            (video,) = sdp.media
            assert video.codec == codec and video.clock_rate == 90000
            units, warnings = video.parameter_sets()
            assert warnings == []
            assert units == vmscore.parameter_sets(es.read_bytes(), codec)
            sps = vmscore.parse_sps(units[1 if codec == "h265" else 0], codec)
            assert (sps.width, sps.height) == (352, 288)


# --- quirks from the camera table ----------------------------------------------------------------


class TestQuirks:
    def test_hikvision_sprop_without_pps_keeps_the_sps(self) -> None:
        sdp = core.parse_sdp(
            "v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
            f"a=fmtp:96 packetization-mode=1;sprop-parameter-sets={SPS_1080P},\r\n"
        )
        units, warnings = sdp.media[0].parameter_sets()
        assert units == [b64(SPS_1080P)] and warnings == []

    def test_hikvision_packetization_mode_0_without_sprop_means_in_band(self) -> None:
        sdp = core.parse_sdp(
            "v=0\nm=video 0 RTP/AVP 96\na=rtpmap:96 H264/90000\na=fmtp:96 packetization-mode=0\n"
        )
        assert sdp.media[0].parameter_sets() == ([], [])
        assert sdp.media[0].packetization_mode == 0

    def test_v380_annexb_start_codes_inside_sprop(self) -> None:
        blob = b"\0\0\0\1" + b64(SPS_1080P) + b"\0\0\1" + b64(PPS_1080P)
        sprop = base64.b64encode(blob).decode()
        sdp = core.parse_sdp(f"{H264_MEDIA}a=fmtp:96 sprop-parameter-sets={sprop}\n")
        units, warnings = sdp.media[0].parameter_sets()
        assert units == [b64(SPS_1080P), b64(PPS_1080P)] and warnings == []

    def test_sprop_padding_is_optional(self) -> None:
        unpadded = SPS_1080P.rstrip("="), PPS_1080P.rstrip("=")
        sdp = core.parse_sdp(
            "v=0\nm=video 0 RTP/AVP 96\na=rtpmap:96 H264/90000\n"
            f"a=fmtp:96 sprop-parameter-sets={unpadded[0]},{unpadded[1]}\n"
        )
        assert sdp.media[0].parameter_sets()[0] == [b64(SPS_1080P), b64(PPS_1080P)]

    @pytest.mark.parametrize(
        ("sprop", "why"),
        [
            ("!!!notbase64,aO8PyA==", "is not base64"),
            (f"{PPS_1080P},{SPS_1080P[:12]}", "ignored a unit"),  # a truncated SPS
            ("Bv8=,aO8PyA==", "not a parameter set"),  # an SEI instead of an SPS
            ("5w==,aO8PyA==", "forbidden_zero_bit"),
        ],
    )
    def test_unusable_sprop_units_are_left_out_with_a_warning(self, sprop: str, why: str) -> None:
        sdp = core.parse_sdp(f"{H264_MEDIA}a=fmtp:96 sprop-parameter-sets={sprop}\n")
        units, warnings = sdp.media[0].parameter_sets()
        assert len(warnings) == 1 and why in warnings[0], warnings
        # What is usable stays; the engine waits for in-band parameter sets for the rest.
        assert all(u[0] & 0x1F in (7, 8) for u in units)

    def test_missing_o_line(self) -> None:
        sdp = core.parse_sdp(
            "v=0\r\ns=cam\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
        )
        assert sdp.origin == "" and sdp.warnings == [] and sdp.media[0].encoding == "H264"

    def test_trailing_space_in_rtpmap_clock_rate(self) -> None:
        sdp = core.parse_sdp("v=0\nm=video 0 RTP/AVP 96\na=rtpmap:96 H264/90000 \n")
        assert sdp.media[0].clock_rate == 90000

    def test_ubiquiti_empty_fmtp_and_mixed_case_names(self) -> None:
        sdp = core.parse_sdp(UBIQUITI_SDP)
        aac, opus, video = sdp.media
        assert sdp.warnings == []
        assert opus.fmtp == [] and (opus.encoding, opus.channels) == ("OPUS", 2)
        config = aac.aac_config()
        assert config is not None and (config.size_length, config.index_length) == (13, 3)
        assert (config.sample_rate, config.channels) == (48000, 1)
        assert video.parameter_sets()[0] == [b64(SPS_1080P), b64(PPS_1080P)]

    def test_tplink_unparseable_media_section_is_skipped(self) -> None:
        sdp = core.parse_sdp(TPLINK_SDP)
        assert [m.encoding for m in sdp.media] == ["H265", "PCMA"]
        (warning,) = sdp.warnings
        assert "skipped" in warning and "application/TP-LINK" in warning

    def test_luckfox_attributes_and_transport_parameters_in_any_order(self) -> None:
        sdp = core.parse_sdp(
            "v=0\nm=video 0 RTP/AVP 96\na=control:trackID=0\na=fmtp:96 packetization-mode=1\n"
            "a=rtpmap:96 H264/90000\n"
        )
        assert (sdp.media[0].control, sdp.media[0].encoding, sdp.media[0].packetization_mode) == (
            "trackID=0",
            "H264",
            1,
        )
        t = core.parse_transport("RTP/AVP/TCP;ssrc=22345684;interleaved=0-1")
        assert (t.ssrc, t.interleaved, t.tcp) == (0x22345684, (0, 1), True)

    @pytest.mark.parametrize(
        ("transport", "ssrc"),
        [
            ("RTP/AVP/TCP;unicast;interleaved=0-1;ssrc= d6d6627", 0x0D6D6627),  # Hikvision
            ('RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=0x6f7c;mode="PLAY"', 0x6F7C),  # Rubetek
            ("RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=A046", 0xA046),  # 4 hex digits
            ("RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=zz", None),  # unreadable: dropped
        ],
    )
    def test_ssrc_spellings(self, transport: str, ssrc: int | None) -> None:
        t = core.parse_transport(transport)
        assert t.ssrc == ssrc and t.interleaved == (0, 1)

    def test_omny_unparseable_rtptime_is_absent(self) -> None:
        (info,) = core.parse_rtp_info("url=rtsp://10.0.0.7/live/trackID=1;seq=1;rtptime=-1")
        assert (info.seq, info.rtptime) == (1, None)
        (big,) = core.parse_rtp_info("url=trackID=1;seq=70000;rtptime=4294967296")
        assert (big.seq, big.rtptime) == (None, None)

    def test_laureii_trailing_semicolon_and_whitespace_in_rtp_info(self) -> None:
        (info,) = core.parse_rtp_info(
            " url=rtsp://192.168.1.19:554/0/main/trackID=0; seq=0 ;rtptime=0; "
        )
        assert (info.url, info.seq, info.rtptime) == (
            "rtsp://192.168.1.19:554/0/main/trackID=0",
            0,
            0,
        )

    def test_dahua_decimal_ssrc_and_relative_url_in_rtp_info(self) -> None:
        (info,) = core.parse_rtp_info("url=trackID=0;seq=13210;rtptime=1067824145;ssrc=4294962989")
        assert (info.url, info.ssrc) == ("trackID=0", 4294962989)

    def test_commas_inside_rtp_info_urls_stay_in_the_url(self) -> None:
        first, second = core.parse_rtp_info(
            "url=rtsp://cam/live?ch=1,2/trackID=1;seq=5;rtptime=9, url=rtsp://cam/live?ch=1,2/trackID=2;seq=6"
        )
        assert first.url == "rtsp://cam/live?ch=1,2/trackID=1" and first.rtptime == 9
        assert second.url == "rtsp://cam/live?ch=1,2/trackID=2" and second.seq == 6
        # A ';' that does not start a parameter is part of the URL too.
        (odd,) = core.parse_rtp_info("url=rtsp://cam/a;b/trackID=1;seq=3")
        assert (odd.url, odd.seq) == ("rtsp://cam/a;b/trackID=1", 3)

    def test_transport_first_usable_spec_and_round_trip(self) -> None:
        t = core.parse_transport(
            "RAW/RAW/UDP;unicast;client_port=3456-3457, RTP/AVP/TCP;unicast;interleaved=2-3"
        )
        assert (t.protocol, t.tcp, t.interleaved) == ("RTP/AVP", True, (2, 3))
        udp = core.parse_transport(
            "RTP/AVP;unicast;client_port=50000-50001;server_port=6970-6971;ssrc=0A1B2C3D;mode=play"
        )
        assert (udp.tcp, udp.client_port, udp.server_port) == (False, (50000, 50001), (6970, 6971))
        assert udp.to_string() == (
            'RTP/AVP;unicast;client_port=50000-50001;server_port=6970-6971;ssrc=0A1B2C3D;mode="PLAY"'
        )
        assert core.parse_transport(udp.to_string()).to_string() == udp.to_string()
        multicast = core.parse_transport(
            "RTP/AVP;multicast;destination=232.1.2.3;port=5000;ttl=16;source=10.0.0.9"
        )
        assert (multicast.multicast, multicast.destination, multicast.source) == (
            True,
            "232.1.2.3",
            "10.0.0.9",
        )
        assert (multicast.port, multicast.ttl) == ((5000, 5001), 16)
        with pytest.raises(BitstreamError, match=r"no usable transport.*not RTP/AVP"):
            core.parse_transport("RAW/RAW/UDP;unicast")

    @pytest.mark.parametrize(
        ("value", "why"),
        [
            ("RTP/AVP/TCP;interleaved=300-301", "bad interleaved channels '300-301'"),
            ("RTP/AVP/TCP;interleaved=-1", "bad interleaved channels"),
            ("RTP/AVP;client_port=70000-70001", "bad client_port"),
            ("RTP/AVP;server_port=99999999999999999999", "bad server_port"),
            ("RTP/AVP/SCTP;unicast", "neither UDP nor TCP"),
        ],
    )
    def test_transport_numbers_out_of_range(self, value: str, why: str) -> None:
        with pytest.raises(BitstreamError, match=why):
            core.parse_transport(value)

    def test_negative_and_overflowing_numbers_elsewhere(self) -> None:
        assert parse_one(b"RTSP/1.0 200 OK\r\nCSeq: 99999999999\r\n\r\n").cseq is None
        assert parse_one(b"RTSP/1.0 200 OK\r\nCSeq: -1\r\n\r\n").cseq is None
        with pytest.raises(BitstreamError, match="bad status code"):
            core.parse_rtsp(b"RTSP/1.0 -200 OK\r\n")
        assert core.parse_session("abc;timeout=99999999999") == ("abc", 60)
        sdp = core.parse_sdp(
            "v=0\nb=AS:-5\nm=video -1 RTP/AVP 96\nm=video 0 RTP/AVP 96\n"
            "a=rtpmap:96 H264/-90000\nm=audio 0 RTP/AVP 300\nm=audio 0 RTP/AVP 8\n"
            "a=framerate:-25\n"
        )
        assert sdp.bandwidth_kbps == 0
        assert [m.encoding for m in sdp.media] == ["PCMA"] and sdp.media[0].framerate is None
        assert [w.split(": ", 1)[1] for w in sdp.warnings] == [
            "bad port '-1'",
            "bad rtpmap 'H264/-90000'",
            "format '300' is not an RTP payload type",
        ]

    def test_session_id_is_kept_exactly_and_timeout_defaults_to_60(self) -> None:
        assert core.parse_session("F8F8E425") == ("F8F8E425", 60)
        assert core.parse_session("  12345678abc-_.$ ; timeout = 30") == ("12345678abc-_.$", 30)
        assert core.parse_session("7A3C;timeout=abc") == ("7A3C", 60)
        assert core.parse_session("7A3C;timeout=0") == ("7A3C", 60)
        with pytest.raises(BitstreamError, match="without a session id"):
            core.parse_session(" ;timeout=60")


# --- the connection parser ---------------------------------------------------------------------


class TestConnectionParser:
    def test_interleaved_frames_between_messages(self) -> None:
        rtcp = bytes([0x80, 200, 0, 6]) + bytes(24)
        rtp = bytes([0x80, 96, 0x12, 0x34]) + bytes(8) + b"\x65payload"
        stream = (
            b"$\x01"
            + len(rtcp).to_bytes(2, "big")
            + rtcp  # RTCP SR before the PLAY response
            + HIKVISION_PLAY
            + b"$\x00"
            + len(rtp).to_bytes(2, "big")
            + rtp
            + b"$\x00\x00\x00"  # an empty frame
            + b"$\x00\x00\x10"
            + rtp[:5]  # incomplete: NeedMore
        )
        items, used = parse_stream(stream)
        assert items[0] == ("interleaved", 1, rtcp)
        assert isinstance(items[1], core.RtspMessage) and items[1].cseq == 6
        assert items[2:] == [("interleaved", 0, rtp), ("interleaved", 0, b"")]
        assert used == len(stream) - 9

    def test_requests_as_a_server_reads_them(self) -> None:
        stream = crlf(
            "OPTIONS rtsp://192.168.1.64:554/Streaming/Channels/101 RTSP/1.0\n"
            "CSeq: 1\nUser-Agent: vmscore\n\n"
            "SETUP rtsp://192.168.1.64:554/Streaming/Channels/101/trackID=1 RTSP/1.0\n"
            "CSeq: 2\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\n\n"
            "SET_PARAMETER * RTSP/1.0\nCSeq: 3\nContent-Type: text/parameters\n"
            "Content-Length: 11\n\nbarparam: x"
        ).encode()
        options, setup, set_parameter = parse_stream(stream)[0]
        assert isinstance(options, core.RtspMessage) and options.is_request
        assert (options.method, options.uri, options.version) == (
            "OPTIONS",
            "rtsp://192.168.1.64:554/Streaming/Channels/101",
            "RTSP/1.0",
        )
        assert isinstance(setup, core.RtspMessage)
        assert core.parse_transport(setup.header("transport") or "").interleaved == (0, 1)
        assert isinstance(set_parameter, core.RtspMessage)
        assert (set_parameter.uri, set_parameter.body) == ("*", b"barparam: x")

    def test_folded_headers_bare_lf_and_space_before_colon(self) -> None:
        msg = parse_one(
            b"RTSP/1.0 200 OK\nCSeq : 7\nPublic: OPTIONS, DESCRIBE,\n\tSETUP, PLAY,\n  TEARDOWN\n"
            b"X-Empty:\n\n"
        )
        assert msg.cseq == 7
        assert core.parse_public(msg.header("Public") or "") == [
            "OPTIONS",
            "DESCRIBE",
            "SETUP",
            "PLAY",
            "TEARDOWN",
        ]
        assert msg.header("x-empty") == ""

    def test_blank_lines_before_a_message_are_skipped(self) -> None:
        data = b"\r\n\r\n" + HIKVISION_SETUP
        assert parse_one(data).cseq == 5

    @pytest.mark.parametrize(
        "message",
        [
            AXIS_DESCRIBE,
            HIKVISION_SETUP,
            ANJVISION_DESCRIBE,
            b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n",
            b"\r\nRTSP/1.0 200\nPublic: OPTIONS,\n DESCRIBE\n\n",
        ],
    )
    def test_every_prefix_of_a_valid_message_needs_more(self, message: bytes) -> None:
        for n in range(len(message)):
            assert core.parse_rtsp(message[:n]) is None, n
        assert parse_one(message).wire_size == len(message)

    @given(cuts=st.lists(st.integers(0, 2000), max_size=30))
    @PROPERTY
    def test_chunked_delivery_gives_the_same_items(self, cuts: list[int]) -> None:
        stream = HIKVISION_DESCRIBE + b"$\x00\x00\x03abc" + REOLINK_PLAY + b"$\x01\x00\x01z"
        stream += AXIS_DESCRIBE + b"$\x00\x00"
        cuts = [c % (len(stream) + 1) for c in cuts]
        whole, whole_used = parse_stream(stream)
        chunked, chunked_used = parse_chunked(stream, cuts)
        assert [summary(i) for i in chunked] == [summary(i) for i in whole]
        assert chunked_used == whole_used == len(stream) - 3

    def test_message_round_trips_through_to_bytes(self) -> None:
        msg = parse_one(AXIS_DESCRIBE)
        assert parse_one(msg.to_bytes()).headers == msg.headers
        assert msg.to_bytes() == AXIS_DESCRIBE
        # A repeated (agreeing) Content-Length stays, as the fuzzer found it must.
        twice = b"RTSP/1.0 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab"
        assert parse_one(twice).to_bytes() == twice


class TestFormatter:
    def test_request_wire_text_is_exact(self) -> None:
        assert core.format_rtsp_request(
            "DESCRIBE",
            "rtsp://192.168.1.64:554/Streaming/Channels/101",
            2,
            [("Accept", "application/sdp"), ("User-Agent", "vmscore")],
        ) == (
            b"DESCRIBE rtsp://192.168.1.64:554/Streaming/Channels/101 RTSP/1.0\r\n"
            b"CSeq: 2\r\nAccept: application/sdp\r\nUser-Agent: vmscore\r\n\r\n"
        )
        assert core.format_rtsp_request("SET_PARAMETER", "*", 9, body=b"a: b\r\n") == (
            b"SET_PARAMETER * RTSP/1.0\r\nCSeq: 9\r\nContent-Length: 6\r\n\r\na: b\r\n"
        )

    def test_response_wire_text_is_exact(self) -> None:
        body = b"v=0\r\n"
        assert core.format_rtsp_response(
            200, "OK", 3, [("Content-Type", "application/sdp")], body
        ) == (
            b"RTSP/1.0 200 OK\r\nCSeq: 3\r\nContent-Type: application/sdp\r\n"
            b"Content-Length: 5\r\n\r\nv=0\r\n"
        )
        assert core.format_rtsp_response(454, "Session Not Found", 4) == (
            b"RTSP/1.0 454 Session Not Found\r\nCSeq: 4\r\n\r\n"
        )

    @pytest.mark.parametrize(
        ("call", "why"),
        [
            (
                lambda: core.format_rtsp_request("PLAY", "rtsp://h/x\r\nEvil: 1", 1),
                "whitespace or a control",
            ),
            (
                lambda: core.format_rtsp_request("PLAY", "rtsp://h/x", 1, [("X", "a\r\nEvil: 1")]),
                "control byte",
            ),
            (
                lambda: core.format_rtsp_request("PLAY", "rtsp://h/x", 1, [("Bad Name", "v")]),
                "not a token",
            ),
            (
                lambda: core.format_rtsp_request("PLAY", "rtsp://h/x", 1, [("cseq", "2")]),
                "written by the formatter",
            ),
            (lambda: core.format_rtsp_request("PL AY", "rtsp://h/x", 1), "not a token"),
            (lambda: core.format_rtsp_response(42, "Nope", 1), "100..999"),
            (lambda: core.rtsp_interleaved_header(0, 70000), "65535"),
        ],
    )
    def test_header_injection_and_misuse_are_refused(
        self, call: Callable[[], object], why: str
    ) -> None:
        with pytest.raises(ValueError, match=why):
            call()

    def test_interleaved_header(self) -> None:
        assert core.rtsp_interleaved_header(3, 1400) == b"$\x03\x05\x78"

    @given(
        method=st.sampled_from(
            ["OPTIONS", "DESCRIBE", "SETUP", "PLAY", "GET_PARAMETER", "X-VENDOR"]
        ),
        uri=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=80),
        cseq=st.integers(0, 2**32 - 1),
        headers=st.lists(
            st.tuples(
                st.text(st.sampled_from("abcXYZ019-_.!#$%&'*+^`|~"), min_size=1, max_size=20),
                st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60).map(
                    str.strip
                ),
            ).filter(lambda h: h[0].lower() not in ("cseq", "content-length")),
            max_size=10,
        ),
        body=st.binary(max_size=300),
    )
    @PROPERTY
    def test_format_then_parse_round_trip(
        self, method: str, uri: str, cseq: int, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        wire = core.format_rtsp_request(method, uri, cseq, headers, body)
        msg = parse_one(wire)
        assert (msg.method, msg.uri, msg.cseq, msg.body) == (method, uri, cseq, body)
        expected = [("CSeq", str(cseq)), *headers]
        if body:
            expected.append(("Content-Length", str(len(body))))
        assert msg.headers == expected
        assert msg.to_bytes() == wire


# --- hostile input -------------------------------------------------------------------------------


class TestHostileInput:
    @pytest.mark.parametrize(
        ("data", "why"),
        [
            (b"\x00\x01\x02garbage", "not a request or status line"),
            (
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
                "not a request or status line",
            ),  # TLS
            (b"GET / HTTP/1.1\r\n", "bad RTSP version"),
            (b"HTTP/1.1 200 OK\r\n", "expected a space"),
            (b"RTSP/1.0 2x0 OK\r\n", "bad status code"),
            (b"RTSP/1.0 099 Odd\r\n\r\n", "bad status code"),
            (b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nBroken line\r\n\r\n", "bad character in header name"),
            (b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nBroken\r\n\r\n", "without ':'"),
            (b"RTSP/1.0 200 OK\r\nCSeq: 1\rX: y\r\n\r\n", "control byte"),
            (b"RTSP/1.0 200 OK\r\n folded first\r\n", "folded line before any header"),
            (b"RTSP/1.0 200 OK\r\nContent-Length: -1\r\n\r\n", "invalid Content-Length '-1'"),
            (
                b"RTSP/1.0 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                "invalid Content-Length",
            ),
            (b"RTSP/1.0 200 OK\r\nContent-Length: 12abc\r\n\r\n", "invalid Content-Length"),
            (
                b"RTSP/1.0 200 OK\r\nContent-Length: 1000000000\r\n\r\n",
                "exceeds the limit of 262144 bytes",
            ),
            (
                b"RTSP/1.0 200 OK\r\nContent-Length: 3\r\ncontent-length: 4\r\n\r\nabcd",
                "conflicting",
            ),
            (b"DESCRIBE rtsp://h/ RTSP/1.0 extra\r\n", "unexpected text after the RTSP version"),
            (b"ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJ", "method name too long"),
        ],
    )
    def test_malformed_input_fails_at_once_with_a_clear_message(
        self, data: bytes, why: str
    ) -> None:
        with pytest.raises(BitstreamError, match=why):
            core.parse_rtsp(data)

    def test_errors_quote_hostile_bytes_harmlessly(self) -> None:
        with pytest.raises(BitstreamError) as err:
            core.parse_rtsp(b"\x1b[31m\xff" + b"A" * 1000)
        text = str(err.value)
        assert "\x1b" not in text and "\\x1b" in text and len(text) < 200

    def test_oversized_header_section(self) -> None:
        data = b"RTSP/1.0 200 OK\r\nX-Junk: " + b"a" * 20000
        for n in (100, 16383):
            assert core.parse_rtsp(data[:n]) is None
        with pytest.raises(BitstreamError, match="header section exceeds the limit of 16384 bytes"):
            core.parse_rtsp(data[:16384])
        with pytest.raises(BitstreamError, match="exceeds the limit of 512 bytes"):
            core.parse_rtsp(data, max_header_bytes=512)

    def test_endless_headers_without_a_blank_line(self) -> None:
        data = b"RTSP/1.0 200 OK\r\n" + b"X-A: b\r\n" * 3000
        with pytest.raises(BitstreamError, match="more than 64 header fields"):
            core.parse_rtsp(data)
        with pytest.raises(BitstreamError, match="header section exceeds"):
            core.parse_rtsp(data, max_headers=100000)

    def test_endless_blank_lines_are_bounded(self) -> None:
        assert core.parse_rtsp(b"\r\n" * 100) is None
        with pytest.raises(BitstreamError, match="header section exceeds"):
            core.parse_rtsp(b"\r\n" * 9000)

    def test_body_waits_only_up_to_the_limit(self) -> None:
        head = b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: 262144\r\n\r\n"
        assert core.parse_rtsp(head + bytes(1000)) is None
        assert parse_one(head + b"x" * 262144).content_length == 262144
        with pytest.raises(BitstreamError, match="exceeds the limit of 1000 bytes"):
            core.parse_rtsp(head, max_body_bytes=1000)

    @given(st.binary(max_size=600))
    @example(b"$")
    @example(b"RTSP/1.0 200 OK\r\n\r")
    @PROPERTY
    def test_random_bytes_parse_or_raise_bitstream_error(self, data: bytes) -> None:
        try:
            item = core.parse_rtsp(data)
        except BitstreamError:
            return
        if isinstance(item, core.RtspMessage):
            assert item.wire_size <= len(data)
            assert parse_one(item.to_bytes()).headers == item.headers
        elif item is not None:
            assert 4 + len(item[2]) <= len(data)

    @given(st.binary(max_size=400).map(lambda b: b"RTSP/1.0 200 OK\r\n" + b))
    @PROPERTY
    def test_random_headers_parse_or_raise_bitstream_error(self, data: bytes) -> None:
        with contextlib.suppress(BitstreamError):
            core.parse_rtsp(data)

    @given(st.text(max_size=200))
    @example("RTP/AVP;interleaved=300-301")
    @example("RTP/AVP;client_port=70000")
    @example('Digest realm="unterminated')
    @PROPERTY
    def test_header_field_parsers_raise_only_bitstream_error(self, value: str) -> None:
        for parse in (
            core.parse_transport,
            core.parse_session,
            core.parse_rtp_info,
            core.parse_public,
            core.parse_www_authenticate,
            core.parse_url,
        ):
            with contextlib.suppress(BitstreamError):
                parse(value)
        assert core.resolve_control("rtsp://cam/", value)

    @given(st.binary(max_size=800))
    @example(b"v=0\n\x00")
    @example(b"v=0\nm=video 0 RTP/AVP 200\n")
    @PROPERTY
    def test_random_sdp_parses_or_raises_bitstream_error(self, data: bytes) -> None:
        try:
            sdp = core.parse_sdp(b"v=0\n" + data if data[:1] != b"v" else data)
        except BitstreamError:
            return
        for media in sdp.media:
            if media.codec:
                media.parameter_sets()
            with contextlib.suppress(BitstreamError):
                media.aac_config()

    def test_sdp_limits(self) -> None:
        with pytest.raises(BitstreamError, match="more than 4096 lines"):
            core.parse_sdp("v=0\n" + "a=x\n" * 5000)
        with pytest.raises(BitstreamError, match="longer than 16384 bytes"):
            core.parse_sdp("v=0\na=" + "x" * 20000 + "\n")
        with pytest.raises(BitstreamError, match="more than 10 lines"):
            core.parse_sdp("v=0\n" + "a=x\n" * 20, max_lines=10)
        with pytest.raises(BitstreamError, match="NUL byte"):
            core.parse_sdp(b"v=0\ns=\x00\n")
        with pytest.raises(BitstreamError, match="not a session description"):
            core.parse_sdp("<html>401</html>")
        with pytest.raises(BitstreamError, match="empty description"):
            core.parse_sdp("\r\n")

    def test_bad_aac_config_is_an_error_for_that_stream_only(self) -> None:
        sdp = core.parse_sdp(
            "v=0\nm=audio 0 RTP/AVP 97\na=rtpmap:97 MPEG4-GENERIC/16000\na=fmtp:97 config=1710\n"
            "m=audio 0 RTP/AVP 98\na=rtpmap:98 MPEG4-GENERIC/16000\na=fmtp:98 config=zz\n"
            "m=audio 0 RTP/AVP 99\na=rtpmap:99 MPEG4-GENERIC/16000\n"
        )
        with pytest.raises(BitstreamError, match="reserved sampling frequency index 14"):
            sdp.media[0].aac_config()
        with pytest.raises(BitstreamError, match="not hex"):
            sdp.media[1].aac_config()
        with pytest.raises(BitstreamError, match="without config"):
            sdp.media[2].aac_config()

    def test_media_sections_with_bad_lines_are_skipped_not_fatal(self) -> None:
        sdp = core.parse_sdp(
            "v=0\nthis is not sdp\nm=video 0 RTP/AVP 96\na=rtpmap:96 H264\n"
            "m=video x RTP/AVP 96\nm=audio 0 RTP/AVP 8\n"
        )
        assert [m.encoding for m in sdp.media] == ["PCMA"]
        assert len(sdp.warnings) == 3
        assert "line 2 ignored" in sdp.warnings[0] and "bad rtpmap" in sdp.warnings[1]
        assert "bad port" in sdp.warnings[2]


# --- URLs ----------------------------------------------------------------------------------------


class TestUrls:
    def test_credentials_host_port_path_and_query(self) -> None:
        u = core.parse_url("rtsp://user:pa%40ss@host:8554/path?x=1")
        assert (u.scheme, u.user, u.password, u.host, u.port, u.path) == (
            "rtsp",
            "user",
            "pa@ss",
            "host",
            8554,
            "/path?x=1",
        )
        assert u.redacted() == "rtsp://host:8554/path?x=1" == str(u)
        assert "pa@ss" not in repr(u) and "pa%40ss" not in repr(u)
        assert u.to_string(with_credentials=True) == "rtsp://user:pa%40ss@host:8554/path?x=1"

    @pytest.mark.parametrize(
        ("url", "host", "port", "path"),
        [
            (
                "rtsp://192.168.1.64/Streaming/Channels/101",
                "192.168.1.64",
                554,
                "/Streaming/Channels/101",
            ),
            ("RTSP://Cam.Local", "Cam.Local", 554, "/"),
            ("rtsp://[fe80::1]:10554/live", "fe80::1", 10554, "/live"),
            ("rtsp://[2001:db8::7]/", "2001:db8::7", 554, "/"),
            ("rtsps://cam/x", "cam", 322, "/x"),
            ("rtsp://cam?channel=1", "cam", 554, "/?channel=1"),
            ("rtsp://cam:/x", "cam", 554, "/x"),
        ],
    )
    def test_hosts_ports_and_paths(self, url: str, host: str, port: int, path: str) -> None:
        u = core.parse_url(url)
        assert (u.host, u.port, u.path, u.has_credentials) == (host, port, path, False)

    def test_unencoded_at_sign_in_password_is_accepted(self) -> None:
        u = core.parse_url("rtsp://admin:p@ss:w0rd@10.0.0.5/stream1")
        assert (u.user, u.password, u.host) == ("admin", "p@ss:w0rd", "10.0.0.5")
        assert u.redacted() == "rtsp://10.0.0.5:554/stream1"

    @pytest.mark.parametrize(
        ("url", "why"),
        [
            ("http://cam/x", "not rtsp"),
            ("cam/stream", "no scheme"),
            ("rtsp:///x", "no host"),
            ("rtsp://cam:99999/", "bad port"),
            ("rtsp://cam:0/", "bad port"),
            ("rtsp://u:secret%zz@cam/", "bad percent-encoding in the password"),
            ("rtsp://cam/a b", "whitespace"),
            ("rtsp://[fe80::1/", "unterminated IPv6"),
            ("rtsp://ca$m/", "bad character in the host"),
        ],
    )
    def test_bad_urls(self, url: str, why: str) -> None:
        with pytest.raises(BitstreamError, match=why) as err:
            core.parse_url(url)
        assert "secret" not in str(err.value)

    @pytest.mark.parametrize(
        ("base", "control", "resolved"),
        [
            ("rtsp://cam/live/", "*", "rtsp://cam/live/"),
            ("rtsp://cam/live/", "", "rtsp://cam/live/"),
            ("rtsp://cam/live/", "track1", "rtsp://cam/live/track1"),
            ("rtsp://cam/live", "track1", "rtsp://cam/live/track1"),
            ("rtsp://cam:554/live", "rtsp://other/x", "rtsp://other/x"),
            ("rtsp://cam:554/live/sub", "/abs/track", "rtsp://cam:554/abs/track"),
            ("rtsp://cam/live?ch=1", "trackID=0", "rtsp://cam/live?ch=1/trackID=0"),
            ("192.168.1.10:554/stream0/", "trackID=1", "rtsp://192.168.1.10:554/stream0/trackID=1"),
            ("rtsp://cam/live/", " trackID=2 ", "rtsp://cam/live/trackID=2"),
        ],
    )
    def test_control_resolution(self, base: str, control: str, resolved: str) -> None:
        assert core.resolve_control(base, control) == resolved

    def test_content_base_falls_back_to_location_then_request(self) -> None:
        with_location = parse_one(b"RTSP/1.0 200 OK\r\nContent-Location: rtsp://cam/a/\r\n\r\n")
        assert core.content_base(with_location, "rtsp://cam/req") == "rtsp://cam/a/"
        bare = parse_one(b"RTSP/1.0 200 OK\r\n\r\n")
        assert core.content_base(bare, "rtsp://cam/req") == "rtsp://cam/req"


# --- authentication ------------------------------------------------------------------------------

RFC1321_SUITE = {
    b"": "d41d8cd98f00b204e9800998ecf8427e",
    b"a": "0cc175b9c0f1b6a831c399e269772661",
    b"abc": "900150983cd24fb0d6963f7d28e17f72",
    b"message digest": "f96b697d7cb7938d525a2f31aaf161d0",
    b"abcdefghijklmnopqrstuvwxyz": "c3fcd3d76192e4007dfb496cca67e13b",
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789": (
        "d174ab98d277d9f5a5611c2c9f419d9f"
    ),
    b"1234567890" * 8: "57edf4a22be3c955ac49da2e2107b67a",
}


def py_digest(
    user: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str = "",
    nc: int = 1,
    cnonce: str = "",
    *,
    md5_sess: bool = False,
) -> str:
    """RFC 2617 §3.2.2.1 with hashlib, as the reference."""

    def h(s: str) -> str:
        return hashlib.md5(s.encode()).hexdigest()

    ha1 = h(f"{user}:{realm}:{password}")
    if md5_sess:
        ha1 = h(f"{ha1}:{nonce}:{cnonce}")
    ha2 = h(f"{method}:{uri}")
    if not qop:
        return h(f"{ha1}:{nonce}:{ha2}")
    return h(f"{ha1}:{nonce}:{nc:08x}:{cnonce}:{qop}:{ha2}")


class TestAuthentication:
    @pytest.mark.parametrize(("data", "digest"), list(RFC1321_SUITE.items()))
    def test_md5_rfc1321_suite(self, data: bytes, digest: str) -> None:
        assert core.md5_hex(data) == digest

    @given(st.binary(max_size=300))
    @example(b"x" * 55)
    @example(b"x" * 56)
    @example(b"x" * 64)
    @example(b"x" * 119)
    @PROPERTY
    def test_md5_agrees_with_hashlib(self, data: bytes) -> None:
        assert core.md5_hex(data) == hashlib.md5(data).hexdigest()

    def test_md5_of_a_megabyte(self) -> None:
        data = random.Random(7).randbytes(1 << 20)
        assert core.md5_hex(data) == hashlib.md5(data).hexdigest()

    def test_rfc2617_worked_example(self) -> None:
        challenge = (
            'Digest realm="testrealm@host.com", qop="auth,auth-int", '
            'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
        )
        header = core.digest_authorization(
            challenge, "Mufasa", "Circle Of Life", "GET", "/dir/index.html", cnonce="0a4f113b"
        )
        assert header == (
            'Digest username="Mufasa", realm="testrealm@host.com", '
            'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", '
            'response="6629fae49393a05397450978507c4ef1", '
            'opaque="5ccc069c403ebaf9f0171e9517f40e41", qop=auth, nc=00000001, cnonce="0a4f113b"'
        )

    def test_rfc7616_md5_example(self) -> None:
        assert (
            core.digest_response(
                "Mufasa",
                "http-auth@example.org",
                "Circle of Life",
                "GET",
                "/dir/index.html",
                "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
                qop="auth",
                nc=1,
                cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            )
            == "8ca523f5e9506fed4657c9700eebdbec"
        )

    @given(
        user=st.text(max_size=20),
        password=st.text(max_size=20),
        realm=st.text(max_size=20),
        nonce=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40),
        qop=st.sampled_from(["", "auth"]),
        nc=st.integers(1, 2**32 - 1),
        md5_sess=st.booleans(),
    )
    @PROPERTY
    def test_digest_agrees_with_python(
        self, user: str, password: str, realm: str, nonce: str, qop: str, nc: int, md5_sess: bool
    ) -> None:
        uri = "rtsp://192.168.1.64:554/Streaming/Channels/101"
        got = core.digest_response(
            user,
            realm,
            password,
            "DESCRIBE",
            uri,
            nonce,
            qop=qop,
            nc=nc,
            cnonce="c0ffee",
            md5_sess=md5_sess,
        )
        assert got == py_digest(
            user, realm, password, "DESCRIBE", uri, nonce, qop, nc, "c0ffee", md5_sess=md5_sess
        )

    def test_digest_without_qop_is_the_common_camera_case(self) -> None:
        uri = "rtsp://192.168.1.108:554/cam/realmonitor?channel=1&subtype=0"
        header = core.digest_authorization(
            'Digest realm="Login to 4L0A1B2C3D", nonce="8a2d7a0f2c1e5b9d"',
            "admin",
            "secret",
            "DESCRIBE",
            uri,
        )
        expected = py_digest(
            "admin", "Login to 4L0A1B2C3D", "secret", "DESCRIBE", uri, "8a2d7a0f2c1e5b9d"
        )
        assert header == (
            f'Digest username="admin", realm="Login to 4L0A1B2C3D", nonce="8a2d7a0f2c1e5b9d", '
            f'uri="{uri}", response="{expected}"'
        )

    def test_md5_sess_and_nc_counting(self) -> None:
        challenge = 'Digest realm="r", nonce="n", algorithm=MD5-sess, qop="auth"'
        header = core.digest_authorization(
            challenge, "u", "p", "PLAY", "rtsp://c/", cnonce="cc", nc=2
        )
        response = py_digest(
            "u", "r", "p", "PLAY", "rtsp://c/", "n", "auth", 2, "cc", md5_sess=True
        )
        assert f'response="{response}"' in header
        assert "algorithm=MD5-sess" in header and "nc=00000002" in header
        with pytest.raises(ValueError, match="cnonce"):
            core.digest_authorization(challenge, "u", "p", "PLAY", "rtsp://c/")

    def test_several_challenges_digest_preferred_over_basic(self) -> None:
        one_header = 'Basic realm="cam", Digest realm="cam", nonce="abc, def", stale=TRUE'
        basic, digest = core.parse_www_authenticate(one_header)
        assert (basic.scheme, digest.scheme) == ("basic", "digest")
        assert digest.nonce == "abc, def" and digest.stale
        header = core.digest_authorization(one_header, "u", "p", "OPTIONS", "rtsp://cam/")
        assert header.startswith("Digest ")
        two_headers = ['Basic realm="cam"', 'Digest realm="cam", nonce="n1"']
        assert core.digest_authorization(two_headers, "u", "p", "OPTIONS", "*").startswith(
            "Digest "
        )

    def test_basic_only(self) -> None:
        header = core.digest_authorization(
            'Basic realm="IPCAM"', "admin", "pa:ss", "DESCRIBE", "rtsp://cam/"
        )
        assert header == "Basic " + base64.b64encode(b"admin:pa:ss").decode()
        creds = core.parse_authorization(header)
        assert creds.scheme == "basic" and base64.b64decode(creds.token68) == b"admin:pa:ss"

    def test_quoted_strings_with_escapes(self) -> None:
        (c,) = core.parse_www_authenticate(
            r'Digest realm="a \"quoted\" realm\\", nonce=plain, opaque=""'
        )
        assert (c.realm, c.nonce, c.opaque) == ('a "quoted" realm\\', "plain", "")
        header = core.digest_authorization(
            r'Digest realm="a \"q\"", nonce="n"', 'us"er', "p", "GET", "/"
        )
        assert header.startswith(r'Digest username="us\"er", realm="a \"q\""')

    def test_unsupported_challenges(self) -> None:
        sha = core.parse_www_authenticate('Digest realm="r", nonce="n", algorithm=SHA-256')
        assert not sha[0].is_supported
        with pytest.raises(BitstreamError, match="no supported challenge"):
            core.digest_authorization(
                'Negotiate, Digest realm="r", nonce="n", algorithm=SHA-256', "u", "p", "GET", "/"
            )
        with pytest.raises(BitstreamError, match="unterminated quoted string"):
            core.parse_www_authenticate('Digest realm="r')
        with pytest.raises(BitstreamError, match="parameter before any scheme"):
            core.parse_www_authenticate('realm="r"')

    def test_server_side_reads_the_clients_credentials(self) -> None:
        challenge = 'Digest realm="sim", nonce="a1b2", qop="auth"'
        header = core.digest_authorization(
            challenge, "viewer", "pw", "DESCRIBE", "rtsp://sim/cam1", cnonce="x9"
        )
        creds = core.parse_authorization(header)
        params = dict(creds.params)
        expected = core.digest_response(
            params["username"],
            params["realm"],
            "pw",
            "DESCRIBE",
            params["uri"],
            params["nonce"],
            qop=params["qop"],
            nc=int(params["nc"], 16),
            cnonce=params["cnonce"],
        )
        assert params["response"] == expected
