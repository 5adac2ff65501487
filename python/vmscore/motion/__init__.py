"""Motion analysis: one `MotionDetector` per camera on decoded luma, with zones and masks,
suppression of light changes, camera shake, rain and swaying trees, and tamper detection.

The work happens in the native core (SIMD kernels, no allocation per frame, the GIL released);
this module validates settings and takes frames as numpy arrays, buffers with a stride, or PyAV
video frames without copying them.
"""

from vmscore.motion.detector import (
    MotionBlob,
    MotionDetector,
    MotionKernels,
    MotionResult,
    MotionSettings,
    MotionZoneHit,
    TamperKind,
    ZoneSettings,
    grid_cells,
)

__all__ = [
    "MotionBlob",
    "MotionDetector",
    "MotionKernels",
    "MotionResult",
    "MotionSettings",
    "MotionZoneHit",
    "TamperKind",
    "ZoneSettings",
    "grid_cells",
]
