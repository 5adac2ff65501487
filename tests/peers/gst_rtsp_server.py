"""An RTSP server built on GStreamer's gst-rtsp-server: an independent peer for the ingest tests.

Runs with Debian's system Python (python3-gi, gir1.2-gst-rtsp-server-1.0), not the project's venv:

    /usr/bin/python3 tests/peers/gst_rtsp_server.py [--file-h264 PATH] [--file-h265 PATH]

Binds 127.0.0.1 on an ephemeral port and prints "PORT <n>" once it serves:
  /h264, /h265        live test patterns (x264enc / x265enc), a keyframe every second
  /h264-aac, /h264-pcmu   small H.264 video with an AAC or G.711 audio track
  /file-h264, /file-h265   the given Annex-B elementary streams, looped, as a camera would
Every mount accepts RTP over TCP (interleaved) and UDP. Stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

LIVE = {
    "h264": (
        "videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=360,framerate=15/1 "
        "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 "
        "! video/x-h264,profile=high ! rtph264pay name=pay0 pt=96 config-interval=-1"
    ),
    "h265": (
        "videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=360,framerate=15/1 "
        "! x265enc tune=zerolatency speed-preset=ultrafast key-int-max=15 "
        "! rtph265pay name=pay0 pt=96 config-interval=-1"
    ),
}
VIDEO_SMALL = (
    "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=15/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 "
    "! rtph264pay name=pay0 pt=96 config-interval=-1 "
)
LIVE["h264-aac"] = VIDEO_SMALL + (
    "audiotestsrc is-live=true wave=sine ! audio/x-raw,rate=16000,channels=1 "
    "! avenc_aac ! rtpmp4gpay name=pay1 pt=97"
)
LIVE["h264-pcmu"] = VIDEO_SMALL + (
    "audiotestsrc is-live=true wave=sine ! audio/x-raw,rate=8000,channels=1 "
    "! mulawenc ! rtppcmupay name=pay1"
)


def file_pipeline(codec: str, path: str) -> str:
    parse = "h264parse" if codec == "h264" else "h265parse"
    pay = "rtph264pay" if codec == "h264" else "rtph265pay"
    # identity sync=true paces the file in real time, as a camera sends.
    return (
        f"multifilesrc location={path} loop=true ! {parse} ! "
        f"video/x-{codec},stream-format=byte-stream,alignment=au ! identity sync=true ! "
        f"{pay} name=pay0 pt=96 config-interval=-1"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--file-h264")
    parser.add_argument("--file-h265")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service("0")
    mounts = server.get_mount_points()
    launches = dict(LIVE)
    if args.file_h264:
        launches["file-h264"] = file_pipeline("h264", args.file_h264)
    if args.file_h265:
        launches["file-h265"] = file_pipeline("h265", args.file_h265)
    for name, launch in launches.items():
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(f"( {launch} )")
        # Shared media serve every client from one pipeline. Not for the audio mounts: a client
        # that sets up only the video track there leaves the shared media without a running
        # audio stream, and GStreamer then answers the next client's DESCRIBE with 503.
        factory.set_shared(name not in ("h264-aac", "h264-pcmu"))
        factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP | GstRtsp.RTSPLowerTrans.UDP)
        mounts.add_factory(f"/{name}", factory)
    if server.attach(None) == 0:
        print("ERROR cannot attach the server", flush=True)
        return 1
    print(f"PORT {server.get_bound_port()}", flush=True)

    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
