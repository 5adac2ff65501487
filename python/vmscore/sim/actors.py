"""People and vehicles of synthetic scenes: how they move on the ground and what they look like.

Actors walk or drive along paths given in ground-plane metres (X lateral, Z depth away from the
camera) at physical speeds, so perspective makes distant ones small and slow, like a real camera
sees them. Each frame a silhouette is rasterised procedurally at the actor's sub-pixel position:
a person with head, torso, swinging arms and legs; a vehicle in side view with cabin, windows,
wheels and lamps. The silhouette is the ground-truth mask.

Pure functions and frozen values; no shared state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from vmscore.sim._raster import F32, Bool, fractal_noise
from vmscore.sim.truth import ObjectKind

__all__ = [
    "Actor",
    "ActorState",
    "Appearance",
    "PathSpec",
    "Sprite",
    "make_actor",
    "render_sprite",
]

Ground = tuple[float, float]
YCC = tuple[float, float, float]
"""A colour as (Y, Cb - 128, Cr - 128), full range."""


def rgb(r: float, g: float, b: float) -> YCC:
    """Full-range BT.601 (Y, Cb-128, Cr-128) of an sRGB-ish colour."""
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return (y, -0.168736 * r - 0.331264 * g + 0.5 * b, 0.5 * r - 0.418688 * g - 0.081312 * b)


_CLOTHES: tuple[YCC, ...] = (
    rgb(40, 40, 45),
    rgb(200, 200, 195),
    rgb(30, 50, 110),
    rgb(150, 30, 35),
    rgb(60, 110, 60),
    rgb(120, 120, 130),
    rgb(210, 170, 40),
    rgb(90, 60, 40),
    rgb(70, 140, 190),
    rgb(240, 240, 240),
)
_TROUSERS: tuple[YCC, ...] = (
    rgb(35, 35, 40),
    rgb(40, 55, 90),
    rgb(90, 85, 75),
    rgb(20, 20, 20),
    rgb(140, 130, 110),
)
_SKIN: tuple[YCC, ...] = (rgb(225, 190, 160), rgb(190, 140, 100), rgb(120, 80, 55), rgb(90, 60, 40))
_HAIR: tuple[YCC, ...] = (rgb(30, 25, 20), rgb(90, 60, 30), rgb(180, 150, 90), rgb(60, 60, 60))
_CAR: tuple[YCC, ...] = (
    rgb(235, 235, 235),
    rgb(170, 172, 178),
    rgb(25, 25, 28),
    rgb(160, 20, 25),
    rgb(30, 60, 140),
    rgb(80, 85, 90),
    rgb(200, 190, 160),
)


@dataclass(frozen=True, slots=True)
class PathSpec:
    """A route through a scene, in ground metres.

    The first and last waypoints are usually off-frame (the actor enters and leaves at an edge) or
    at a door. ``dwell_s[i]`` is how long the actor stands at waypoint ``i`` (a (min, max) range);
    with ``parks`` the actor stops at the last waypoint for good.
    """

    name: str
    kind: ObjectKind
    waypoints: tuple[Ground, ...]
    speed_mps: tuple[float, float] = (1.1, 1.6)
    dwell_s: tuple[tuple[float, float], ...] = ()
    weight: float = 1.0
    parks: bool = False
    jitter_m: float = 0.6
    """Random lateral offset of the whole route, so walkers do not tread exactly one line."""


@dataclass(frozen=True, slots=True)
class Appearance:
    """How one actor looks: sizes in metres, colours, a private texture."""

    height_m: float
    width_m: float
    main: YCC
    second: YCC
    skin: YCC
    hair: YCC
    texture: F32
    """A smooth noise tile (about -1..1) stretched over the body, so it moves with the actor."""


@dataclass(frozen=True, slots=True)
class ActorState:
    """Where an actor is at one instant."""

    x_m: float
    z_m: float
    heading: Ground
    """Unit direction of travel on the ground (X, Z)."""
    moving: bool
    distance_m: float
    """Distance travelled so far (drives the walking cycle)."""
    parked_since_s: float | None
    """When a parking actor came to rest for good, else None."""


@dataclass(frozen=True)
class Actor:
    """One person or vehicle with its complete, precomputed schedule."""

    id: int
    kind: ObjectKind
    path: str
    spawn_s: float
    waypoints: tuple[Ground, ...]
    speed_mps: float
    dwell_s: tuple[float, ...]
    parks: bool
    look: Appearance
    _legs: list[tuple[float, float, float]] = field(default_factory=list, repr=False)
    """(start, end of movement, end of the dwell that follows), relative to spawn."""

    @property
    def end_s(self) -> float:
        """When the actor leaves the scene (infinity for one that parks)."""
        if self.parks:
            return math.inf
        return self.spawn_s + (self._legs[-1][2] if self._legs else 0.0)

    def state(self, t: float) -> ActorState | None:
        """The actor's state at time ``t`` (seconds), or None when it is not in the scene."""
        tau = t - self.spawn_s
        if tau < 0 or t >= self.end_s:
            return None
        dist = 0.0
        heading = _unit(
            self.waypoints[1][0] - self.waypoints[0][0], self.waypoints[1][1] - self.waypoints[0][1]
        )
        for i, (t0, t1, t2) in enumerate(self._legs):
            ax, az = self.waypoints[i]
            bx, bz = self.waypoints[i + 1]
            seg = math.hypot(bx - ax, bz - az)
            heading = _unit(bx - ax, bz - az) if seg > 0 else heading
            if tau < t1:
                f = (tau - t0) / (t1 - t0) if t1 > t0 else 1.0
                return ActorState(
                    ax + f * (bx - ax), az + f * (bz - az), heading, True, dist + f * seg, None
                )
            dist += seg
            if tau < t2 or (self.parks and i == len(self._legs) - 1):
                parked = self.spawn_s + t1 if self.parks and i == len(self._legs) - 1 else None
                return ActorState(bx, bz, heading, False, dist, parked)
        return None


def _unit(dx: float, dz: float) -> Ground:
    n = math.hypot(dx, dz)
    return (dx / n, dz / n) if n > 0 else (1.0, 0.0)


def make_actor(rng: np.random.Generator, actor_id: int, spec: PathSpec, spawn_s: float) -> Actor:
    """Draws one actor for a path: speed, sizes, colours, dwell times and route jitter."""
    jx, jz = rng.normal(0.0, spec.jitter_m, size=2)
    pts = tuple((x + float(jx), z + float(jz)) for x, z in spec.waypoints)
    speed = float(rng.uniform(*spec.speed_mps))
    dwell = [0.0] * len(pts)
    for i, (lo, hi) in enumerate(spec.dwell_s[: len(pts)]):
        dwell[i] = float(rng.uniform(lo, hi))
    tex = fractal_noise(rng, 48, 24, cells=(8, 4), octaves=2) * np.float32(1.6)
    if spec.kind == "person":
        child = spec.name.startswith("child")
        height = float(rng.uniform(1.15, 1.5) if child else rng.uniform(1.6, 1.9))
        look = Appearance(
            height_m=height,
            width_m=height * 0.26,
            main=_CLOTHES[int(rng.integers(len(_CLOTHES)))],
            second=_TROUSERS[int(rng.integers(len(_TROUSERS)))],
            skin=_SKIN[int(rng.integers(len(_SKIN)))],
            hair=_HAIR[int(rng.integers(len(_HAIR)))],
            texture=tex,
        )
    else:
        look = Appearance(
            height_m=float(rng.uniform(1.4, 1.65)),
            width_m=float(rng.uniform(4.1, 4.8)),
            main=_CAR[int(rng.integers(len(_CAR)))],
            second=rgb(25, 30, 35),
            skin=rgb(250, 245, 220),
            hair=rgb(200, 20, 20),
            texture=tex,
        )
    legs: list[tuple[float, float, float]] = []
    t = dwell[0]
    for i in range(len(pts) - 1):
        seg = math.hypot(pts[i + 1][0] - pts[i][0], pts[i + 1][1] - pts[i][1])
        t1 = t + seg / speed
        t2 = t1 + dwell[i + 1]
        legs.append((t, t1, t2))
        t = t2
    return Actor(
        id=actor_id,
        kind=spec.kind,
        path=spec.name,
        spawn_s=spawn_s,
        waypoints=pts,
        speed_mps=speed,
        dwell_s=tuple(dwell),
        parks=spec.parks,
        look=look,
        _legs=legs,
    )


@dataclass(frozen=True, slots=True)
class Sprite:
    """A rasterised silhouette: luma (albedo, before lighting), chroma offsets, mask and lamps."""

    x0: int
    y0: int
    luma: F32
    cb: F32
    cr: F32
    mask: Bool
    lamps: Bool
    """Pixels that emit light (vehicle head and tail lamps)."""


def _capsule(xs: F32, ys: F32, ax: float, ay: float, bx: float, by: float, r: float) -> Bool:
    """Pixels within ``r`` of the segment a-b."""
    dx, dy = bx - ax, by - ay
    ll = dx * dx + dy * dy
    if ll <= 0:
        out: Bool = (xs - ax) ** 2 + (ys - ay) ** 2 <= r * r
        return out
    t = np.clip(((xs - ax) * dx + (ys - ay) * dy) / ll, 0.0, 1.0)
    px = ax + t * dx - xs
    py = ay + t * dy - ys
    res: Bool = px * px + py * py <= r * r
    return res


def render_sprite(
    actor: Actor,
    st: ActorState,
    foot_x: float,
    foot_y: float,
    px_per_m: float,
    sideways: float,
    facing: float,
    frame_w: int,
    frame_h: int,
) -> Sprite | None:
    """Rasterises ``actor`` with its ground point at pixel ``(foot_x, foot_y)``.

    ``px_per_m`` is the image scale at the actor's depth; ``sideways`` (0..1) how much the motion
    is across the image rather than towards or away from the camera, ``facing`` +1 or -1 for
    right or left. Returns None when nothing falls inside the frame.
    """
    look = actor.look
    hp = look.height_m * px_per_m
    if actor.kind == "person":
        half_w = 0.42 * hp
    else:
        half_w = 0.5 * look.width_m * px_per_m * (0.35 + 0.65 * sideways) + 0.1 * hp
    x0 = max(0, math.floor(foot_x - half_w))
    x1 = min(frame_w, math.ceil(foot_x + half_w) + 1)
    y0 = max(0, math.floor(foot_y - hp - 1))
    y1 = min(frame_h, math.ceil(foot_y) + 1)
    if x1 <= x0 or y1 <= y0 or hp < 1.0:
        return None
    xs = np.arange(x0, x1, dtype=np.float32)[None, :] + np.float32(0.5)
    ys = np.arange(y0, y1, dtype=np.float32)[:, None] + np.float32(0.5)
    # Body coordinates: u across (in heights, from the ground point), v down from the head.
    u = (xs - np.float32(foot_x)) / np.float32(hp)
    v = (ys - np.float32(foot_y - hp)) / np.float32(hp)
    shape = (y1 - y0, x1 - x0)
    if actor.kind == "person":
        sp = _person(actor, st, u, v, sideways, facing, shape)
    else:
        sp = _vehicle(actor, u, v, sideways, facing, look.width_m / look.height_m, shape)
    luma, cb, cr, mask, lamps = sp
    if not mask.any():
        return None
    return Sprite(x0, y0, luma, cb, cr, mask, lamps)


_Parts = tuple[F32, F32, F32, Bool, Bool]


def _texture(look: Appearance, u: F32, v: F32) -> F32:
    th, tw = look.texture.shape
    iu = np.clip(((u + 0.5) * (tw - 1)).astype(np.intp), 0, tw - 1)
    iv = np.clip((v * (th - 1)).astype(np.intp), 0, th - 1)
    out: F32 = look.texture[iv, iu]
    return out


def _person(
    actor: Actor,
    st: ActorState,
    u: F32,
    v: F32,
    sideways: float,
    facing: float,
    shape: tuple[int, int],
) -> _Parts:
    look = actor.look
    stride = 1.5 * look.height_m / 1.75
    phase = 2.0 * math.pi * st.distance_m / stride
    swing = 0.32 * math.sin(phase) if st.moving else 0.0
    sway = 0.0 if st.moving else 0.004 * math.sin(st.distance_m * 7.0 + actor.id)
    uu = u - np.float32(sway)
    shoulder = 0.115 + 0.03 * (1.0 - sideways)
    hip_w = 0.06 * (1.0 - 0.7 * sideways)
    # Legs: side view swings them along the walking direction; front view lifts them in turn.
    la = swing * sideways
    lift_l = max(0.0, math.sin(phase)) * 0.05 * (1.0 - sideways) if st.moving else 0.0
    lift_r = max(0.0, -math.sin(phase)) * 0.05 * (1.0 - sideways) if st.moving else 0.0
    # Feet end one radius above the ground line, so the soles touch it at the ground point
    # (the swung leg is drawn a little longer instead of lifting the body).
    hip_y, leg_r = 0.52, 0.045
    drop = 1.0 - leg_r - hip_y
    reach = drop * math.tan(la)
    legs = _capsule(uu, v, -hip_w, hip_y, -hip_w + reach * facing, hip_y + drop - lift_l, leg_r)
    legs |= _capsule(uu, v, hip_w, hip_y, hip_w - reach * facing, hip_y + drop - lift_r, leg_r)
    aa = -swing * 0.8 * sideways
    arm_x = shoulder - 0.02
    arms = _capsule(
        uu,
        v,
        -arm_x * (1.0 - 0.8 * sideways),
        0.2,
        -arm_x * (1.0 - 0.8 * sideways) + 0.3 * math.sin(aa) * facing,
        0.2 + 0.3 * math.cos(aa),
        0.032,
    )
    arms |= _capsule(
        uu,
        v,
        arm_x * (1.0 - 0.8 * sideways),
        0.2,
        arm_x * (1.0 - 0.8 * sideways) - 0.3 * math.sin(aa) * facing,
        0.2 + 0.3 * math.cos(aa),
        0.032,
    )
    torso_w = shoulder - (v - 0.17) * 0.1
    torso = (v >= 0.16) & (v <= 0.56) & (np.abs(uu) <= torso_w)
    torso |= ((uu / shoulder) ** 2 + ((v - 0.2) / 0.06) ** 2) <= 1.0
    head = ((uu / 0.058) ** 2 + ((v - 0.075) / 0.068) ** 2) <= 1.0
    neck = (np.abs(uu) <= 0.025) & (v >= 0.13) & (v <= 0.17)
    hair = head & ((v < 0.05) | ((uu * facing < -0.02) & (v < 0.1) & (sideways > 0.5)))
    mask = legs | arms | torso | head | neck

    tex = _texture(look, u, v)
    luma = np.zeros(shape, np.float32)
    cb = np.zeros(shape, np.float32)
    cr = np.zeros(shape, np.float32)

    def put(m: Bool, c: YCC, t_amp: float) -> None:
        luma[m] = c[0] + (tex[m] * t_amp)
        cb[m] = c[1]
        cr[m] = c[2]

    put(legs, look.second, 6.0)
    put(torso | arms, look.main, 9.0)
    put(arms & (v > 0.42), look.skin, 3.0)
    put(head | neck, look.skin, 4.0)
    put(hair, look.hair, 5.0)
    # Round-body shading: darker towards the silhouette's sides and feet.
    luma *= (
        np.float32(1.0)
        - np.float32(1.6) * np.minimum(uu * uu, np.float32(0.05))
        - np.float32(0.12) * np.clip(v - np.float32(0.5), 0.0, 0.5)
    )
    return luma, cb, cr, mask, np.zeros(shape, np.bool_)


def _vehicle(
    actor: Actor,
    u: F32,
    v: F32,
    sideways: float,
    facing: float,
    length_ratio: float,
    shape: tuple[int, int],
) -> _Parts:
    look = actor.look
    # u, v in vehicle heights from the ground point; the body spans |u| <= half_len.
    half_len = 0.5 * length_ratio * (0.35 + 0.65 * sideways)
    un = u / np.float32(half_len) * np.float32(facing)  # -1 rear .. +1 front
    body = (v >= 0.38) & (v <= 0.88) & (np.abs(un) <= 1.0)
    body &= ~((np.abs(un) > 0.93) & ((v < 0.46) | (v > 0.84)))
    cab_top = 0.02
    slope = (v - np.float32(cab_top)) / np.float32(0.38)  # 0 at roof, 1 at waist
    cab = (v >= cab_top) & (v < 0.4) & (un >= -0.62 - 0.22 * slope) & (un <= 0.3 + 0.35 * slope)
    wheel_r = 0.17
    wy = 1.0 - wheel_r
    wheels = np.zeros(shape, np.bool_)
    for wx in (-0.66, 0.62):
        wheels |= ((un - np.float32(wx)) * np.float32(half_len)) ** 2 + (
            v - np.float32(wy)
        ) ** 2 <= wheel_r * wheel_r
    glass = cab & (v > cab_top + 0.06) & (un >= -0.55 - 0.2 * slope) & (un <= 0.24 + 0.33 * slope)
    glass &= np.abs(un + np.float32(0.15)) > 0.03  # B pillar
    lamps_front = body & (un > 0.9) & (v > 0.45) & (v < 0.56)
    lamps_rear = body & (un < -0.93) & (v > 0.44) & (v < 0.55)
    if sideways < 0.4:
        # Seen from the front or back: lamps on both sides of the body.
        lamps_front = body & (np.abs(u) > 0.75 * half_len) & (v > 0.45) & (v < 0.56)
        lamps_rear = lamps_front & np.bool_(False)
    mask = body | cab | wheels
    tex = _texture(look, u, v)
    luma = np.zeros(shape, np.float32)
    cb = np.zeros(shape, np.float32)
    cr = np.zeros(shape, np.float32)

    def put(m: Bool, c: YCC, t_amp: float) -> None:
        luma[m] = c[0] + tex[m] * t_amp
        cb[m] = c[1]
        cr[m] = c[2]

    put(body | cab, look.main, 4.0)
    put(glass, rgb(45, 55, 65), 10.0)
    put(wheels, rgb(20, 20, 22), 3.0)
    put(lamps_front, look.skin, 0.0)
    put(lamps_rear, look.hair, 0.0)
    # Sky reflection on the upper body, shade below the waist line.
    luma[body & (v < 0.5)] *= np.float32(1.12)
    luma[body & (v > 0.75)] *= np.float32(0.8)
    return luma, cb, cr, mask, lamps_front | lamps_rear
