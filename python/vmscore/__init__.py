"""vmscore: the core of a video management system.

A native core (RTSP ingest, GOP-aligned recording to fragmented MP4, SIMD motion analysis) with a
thin Python layer. This module re-exports the public API.
"""

from __future__ import annotations

from vmscore.errors import (
    BitstreamError,
    KeyFileError,
    MuxError,
    NoFootageError,
    ParametersChangedError,
    StorageError,
    VmsError,
)

try:
    from vmscore._core import (
        SEGMENT_METADATA_UUID,
        AccessUnit,
        ExportPlan,
        Fmp4Muxer,
        Fmp4Writer,
        FragmentInfo,
        IngestEngine,
        NalUnit,
        RecordedSegment,
        RecorderCore,
        RecorderEvent,
        SegmentSample,
        SegmentScan,
        Sps,
        StreamEvent,
        StreamStats,
        __version__,
        access_units,
        annexb_to_avcc,
        avcc_to_annexb,
        codec_string,
        decoder_config_record,
        init_segment,
        nal_units,
        parameter_sets,
        parse_sps,
        scan_segment,
        scan_segment_bytes,
        segment_metadata_box,
        simd_detected,
        simd_level,
    )
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise ImportError(
        "vmscore's native extension (vmscore._core) could not be loaded. Install vmscore with "
        "'pip install .' from a source checkout (it compiles the C++ core), or install a wheel "
        f"built for this platform and Python. Cause: {exc}"
    ) from exc

__all__ = [
    "SEGMENT_METADATA_UUID",
    "AccessUnit",
    "BitstreamError",
    "ExportPlan",
    "Fmp4Muxer",
    "Fmp4Writer",
    "FragmentInfo",
    "IngestEngine",
    "KeyFileError",
    "MuxError",
    "NalUnit",
    "NoFootageError",
    "ParametersChangedError",
    "RecordedSegment",
    "RecorderCore",
    "RecorderEvent",
    "SegmentSample",
    "SegmentScan",
    "Sps",
    "StorageError",
    "StreamEvent",
    "StreamStats",
    "VmsError",
    "__version__",
    "access_units",
    "annexb_to_avcc",
    "avcc_to_annexb",
    "codec_string",
    "decoder_config_record",
    "init_segment",
    "nal_units",
    "parameter_sets",
    "parse_sps",
    "scan_segment",
    "scan_segment_bytes",
    "segment_metadata_box",
    "simd_detected",
    "simd_level",
]
