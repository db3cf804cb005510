"""Analytic, torch-vectorized ray caster for i-CLEVR-like scenes.

Floor plane z = 0, spheres, cubes (rounded-edge shading) and cylinders of size r = 0.45 resting on it; a sun
with soft shadows plus warm key, cool fill and back point lights; matte "rubber" shading in linear RGB, then sRGB.
Every image of a batch carries its own camera, lights and objects; objects are padded with shape -1.

Cost control: rays are first tested against each object's bounding sphere, and the exact shape tests and the
soft-shadow rays run only on the (pixel, object) lanes that can hit, so the work scales with covered pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fastddpm.data.srgb import srgb_bytes

WIDTH, HEIGHT = 320, 240
SIZE = 0.45  # sphere radius, cube half-edge, cylinder radius and half-height
TAN_HALF_FOV = 16.0 / 35.0  # 35 mm lens on a 32 mm sensor width
CUBE, SPHERE, CYLINDER = 0, 1, 2  # shape ids, as in conditions.SHAPES
BOUNDING_RADIUS = {CUBE: SIZE * math.sqrt(3.0), SPHERE: SIZE, CYLINDER: SIZE * math.sqrt(2.0)}
EDGE_ROUNDING = 0.07  # shading-normal rounding of cube and cylinder edges
SUN_CONE = 0.09  # half-angle (rad) of the sun's disk: sets shadow softness
SHADOW_SAMPLES = 8
FLOOR_ALBEDO = 0.19
BACKDROP = 0.30  # linear gray the far floor fades into
AMBIENT = 0.16
# (intensity RGB) of sun, key, fill and back lights
LIGHT_RGB = torch.tensor([[0.62, 0.60, 0.57], [0.42, 0.38, 0.33], [0.14, 0.16, 0.21], [0.16, 0.16, 0.16]])
SPECULAR = 0.05  # Blinn-Phong strength; the exponent is 12 (rubber), computed as (x^4)^3
EPS = 1e-4


@dataclass
class SceneBatch:
    """The inputs of one render call, B images with up to K objects each."""

    camera: torch.Tensor  # (B, 3) camera position; it looks at the origin
    lights: torch.Tensor  # (B, 4, 3) sun, key, fill, back positions (the sun is directional)
    shape: torch.Tensor  # (B, K) long shape id, -1 for an empty slot
    center: torch.Tensor  # (B, K, 3) object centre (z = SIZE)
    angle: torch.Tensor  # (B, K) rotation about the vertical axis, radians
    albedo: torch.Tensor  # (B, K, 3) linear RGB
    grain: torch.Tensor  # (B,) phase in [0, 1) of each image's soft-shadow sample rotation

    def to(self, device: torch.device | str) -> SceneBatch:
        return SceneBatch(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


def camera_rays(camera: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """(B, 3) camera positions -> (B, H*W, 3) unit ray directions, row-major from the top-left pixel."""
    device = camera.device
    forward = torch.nn.functional.normalize(-camera, dim=-1)
    up_world = torch.tensor([0.0, 0.0, 1.0], device=device).expand_as(forward)
    right = torch.nn.functional.normalize(torch.linalg.cross(forward, up_world), dim=-1)
    up = torch.linalg.cross(right, forward)
    xs = ((torch.arange(width, device=device) + 0.5) / width * 2 - 1) * TAN_HALF_FOV
    ys = (1 - (torch.arange(height, device=device) + 0.5) / height * 2) * TAN_HALF_FOV * height / width
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    gx, gy = gx.reshape(1, -1, 1), gy.reshape(1, -1, 1)
    dirs = forward[:, None] + gx * right[:, None] + gy * up[:, None]
    return torch.nn.functional.normalize(dirs, dim=-1)


def _to_local(v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (N, 3) vectors by -angle about z."""
    x, y = v[:, 0], v[:, 1]
    return torch.stack((cos * x + sin * y, -sin * x + cos * y, v[:, 2]), dim=-1)


def _to_world(v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x, y = v[:, 0], v[:, 1]
    return torch.stack((cos * x - sin * y, sin * x + cos * y, v[:, 2]), dim=-1)


def _sphere_t(o: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Ray (origin relative to the centre, unit direction) -> hit distance, inf on a miss."""
    b = (o * d).sum(-1)
    disc = b * b - ((o * o).sum(-1) - SIZE**2)
    t = -b - disc.clamp_min(0).sqrt()
    return torch.where((disc > 0) & (t > EPS), t, torch.inf)


def _box_t(o: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Slab test against the axis-aligned cube [-SIZE, SIZE]^3 in local coordinates."""
    d = torch.where(d.abs() < 1e-9, torch.full_like(d, 1e-9), d)
    t1, t2 = (-SIZE - o) / d, (SIZE - o) / d
    t_near = torch.minimum(t1, t2).amax(-1)
    t_far = torch.maximum(t1, t2).amin(-1)
    return torch.where((t_far >= t_near) & (t_near > EPS), t_near, torch.inf)


def _cylinder_t(o: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Vertical cylinder of radius and half-height SIZE, centred at the origin: side and top cap."""
    a = d[:, 0] ** 2 + d[:, 1] ** 2
    b = o[:, 0] * d[:, 0] + o[:, 1] * d[:, 1]
    disc = b * b - a * (o[:, 0] ** 2 + o[:, 1] ** 2 - SIZE**2)
    t_side = (-b - disc.clamp_min(0).sqrt()) / a.clamp_min(1e-12)
    z_side = o[:, 2] + t_side * d[:, 2]
    side_ok = (disc > 0) & (a > 1e-12) & (z_side.abs() <= SIZE) & (t_side > EPS)
    dz = torch.where(d[:, 2].abs() < 1e-9, torch.full_like(d[:, 2], -1e-9), d[:, 2])
    t_cap = (SIZE - o[:, 2]) / dz
    cap_xy = o[:, :2] + t_cap[:, None] * d[:, :2]
    cap_ok = ((cap_xy**2).sum(-1) <= SIZE**2) & (t_cap > EPS)
    return torch.minimum(torch.where(side_ok, t_side, torch.inf), torch.where(cap_ok, t_cap, torch.inf))


def intersect(
    origin: torch.Tensor,  # (N, 3) ray origins, world
    direction: torch.Tensor,  # (N, 3) unit directions, world
    shape: torch.Tensor,  # (N,) shape id of the object tested on each lane
    center: torch.Tensor,  # (N, 3)
    angle: torch.Tensor,  # (N,)
) -> torch.Tensor:
    """Hit distance of each lane's ray against its object, inf on a miss: (N,)."""
    t = torch.full(shape.shape, torch.inf, device=origin.device)
    cos, sin = angle.cos(), angle.sin()
    o = _to_local(origin - center, cos, sin)
    d = _to_local(direction, cos, sin)
    for shape_id, fn in ((CUBE, _box_t), (SPHERE, _sphere_t), (CYLINDER, _cylinder_t)):
        lanes = (shape == shape_id).nonzero().flatten()
        if lanes.numel():
            t[lanes] = fn(o[lanes], d[lanes])
    return t


def surface_normal(
    point: torch.Tensor, shape: torch.Tensor, center: torch.Tensor, angle: torch.Tensor
) -> torch.Tensor:
    """World normals (N, 3) at surface points; cube and cylinder edges are rounded for shading only."""
    cos, sin = angle.cos(), angle.sin()
    p = _to_local(point - center, cos, sin)
    inner = SIZE - EDGE_ROUNDING
    box_q = p.sign() * (p.abs() - inner).clamp_min(0)
    radial = p[:, :2].norm(dim=-1, keepdim=True).clamp_min(1e-9)
    cyl_xy = p[:, :2] / radial * (radial - inner).clamp_min(0)
    cyl_q = torch.cat((cyl_xy, (p[:, 2:] - inner).clamp_min(0)), dim=-1)
    q = torch.where((shape == SPHERE)[:, None], p, torch.where((shape == CUBE)[:, None], box_q, cyl_q))
    return _to_world(torch.nn.functional.normalize(q, dim=-1), cos, sin)


def _candidate_lanes(origin, direction, center, radius, active, exclude=None):
    """(b, pixel, object) index triples whose ray passes through the object's bounding sphere.

    origin (B, P, 3) or (B, 1, 3); direction (B, P, 3) or (B, 1, 3); center (B, K, 3); radius (B, K);
    active (B, K) bool; exclude (B, P) object index to skip per pixel (the surface the ray starts on), or None.
    Written with dot products so that no (B, P, K, 3) tensor is ever formed."""
    c_dot_d = torch.einsum("bpc,bkc->bpk", direction, center)
    o_dot_d = (origin * direction).sum(-1, keepdim=True)
    c_dot_o = torch.einsum("bpc,bkc->bpk", origin, center)
    along = c_dot_d - o_dot_d  # distance along the ray to the closest approach
    dist2 = (
        (center * center).sum(-1)[:, None] + (origin * origin).sum(-1, keepdim=True) - 2 * c_dot_o - along**2
    )
    hit = (dist2 < radius[:, None] ** 2) & (along > -radius[:, None]) & active[:, None]
    if exclude is not None:
        hit &= exclude[..., None] != torch.arange(center.shape[1], device=center.device)
    return hit.nonzero(as_tuple=True)


def primary_hits(scene: SceneBatch, width: int, height: int):
    """Cast camera rays. Returns (dirs (B,P,3), t (B,P) nearest hit distance, obj (B,P) object index or -1)."""
    dirs = camera_rays(scene.camera, width, height)
    cam = scene.camera[:, None]
    t_floor = torch.where(dirs[..., 2] < -1e-6, -cam[..., 2] / dirs[..., 2].clamp(max=-1e-6), torch.inf)
    active = scene.shape >= 0
    radius = torch.zeros_like(scene.angle)
    for shape_id, r in BOUNDING_RADIUS.items():
        radius = torch.where(scene.shape == shape_id, r, radius)
    b, p, k = _candidate_lanes(cam, dirs, scene.center, radius, active)
    t_obj = torch.full((*dirs.shape[:2], scene.shape.shape[1]), torch.inf, device=dirs.device)
    t_obj[b, p, k] = intersect(
        scene.camera[b], dirs[b, p], scene.shape[b, k], scene.center[b, k], scene.angle[b, k]
    )
    t_near, k_near = t_obj.min(-1)
    on_object = t_near < t_floor
    return dirs, torch.where(on_object, t_near, t_floor), torch.where(on_object, k_near, -1), radius


def visible_pixels(scene: SceneBatch, width: int = WIDTH, height: int = HEIGHT) -> torch.Tensor:
    """(B, K) number of pixels where each object is the nearest surface."""
    _, _, obj, _ = primary_hits(scene, width, height)
    k = scene.shape.shape[1]
    counts = torch.nn.functional.one_hot(obj.clamp_min(0), k) * (obj >= 0)[..., None]
    return counts.sum(1)


def _disk_offsets(samples: int, device: torch.device) -> torch.Tensor:
    """Stratified points on the unit disk (Vogel spiral): (S, 2)."""
    i = torch.arange(samples, device=device, dtype=torch.float32)
    r = ((i + 0.5) / samples).sqrt()
    phi = i * math.pi * (3 - math.sqrt(5))
    return torch.stack((r * phi.cos(), r * phi.sin()), -1)


def sun_visibility(scene, points, obj, radius) -> torch.Tensor:
    """Fraction (B, P) of the sun's disk seen from each surface point (soft shadows)."""
    B, P, _ = points.shape
    sun = torch.nn.functional.normalize(scene.lights[:, 0], dim=-1)  # (B, 3)
    cone_radius = radius + 3.0 * math.tan(SUN_CONE)  # bounding spheres widened by the penumbra
    b, p, k = _candidate_lanes(points, sun[:, None], scene.center, cone_radius, scene.shape >= 0, obj)
    visibility = torch.ones(B, P, device=points.device)
    if b.numel() == 0:
        return visibility
    # Rotate the sample pattern per pixel (a fixed hash of the pixel index, shifted by the image's own grain
    # phase, never by its place in the batch) so soft edges read as fine grain.
    up = torch.tensor([0.0, 0.0, 1.0], device=sun.device).expand_as(sun)
    e1 = torch.nn.functional.normalize(torch.linalg.cross(sun, up), dim=-1)
    e2 = torch.linalg.cross(sun, e1)
    twist = torch.frac(torch.frac(torch.sin(p.float() * 12.9898) * 43758.5453) + scene.grain[b]) * 2 * math.pi
    disk = _disk_offsets(SHADOW_SAMPLES, points.device)  # (S, 2)
    cos, sin = twist.cos()[:, None], twist.sin()[:, None]
    u = disk[None, :, 0] * cos - disk[None, :, 1] * sin  # (N, S)
    v = disk[None, :, 0] * sin + disk[None, :, 1] * cos
    scale = math.tan(SUN_CONE)
    dirs = sun[b][:, None] + scale * (u[..., None] * e1[b][:, None] + v[..., None] * e2[b][:, None])
    dirs = torch.nn.functional.normalize(dirs, dim=-1).reshape(-1, 3)  # (N*S, 3)
    rep = lambda x: x.repeat_interleave(SHADOW_SAMPLES, dim=0)  # noqa: E731
    t = intersect(
        rep(points[b, p]), dirs, rep(scene.shape[b, k]), rep(scene.center[b, k]), rep(scene.angle[b, k])
    )
    blocked = torch.zeros(B * P * SHADOW_SAMPLES, device=points.device)
    lane_pixel = rep(b * P + p) * SHADOW_SAMPLES + torch.arange(SHADOW_SAMPLES, device=points.device).repeat(
        b.numel()
    )
    blocked.scatter_reduce_(0, lane_pixel, (t < torch.inf).float(), reduce="amax")
    return 1.0 - blocked.view(B, P, SHADOW_SAMPLES).mean(-1)


def render(scene: SceneBatch, width: int = WIDTH, height: int = HEIGHT) -> torch.Tensor:
    """Render a batch: (B, H, W, 3) uint8 sRGB."""
    B, K = scene.shape.shape
    dirs, t, obj, radius = primary_hits(scene, width, height)
    t = torch.where(torch.isinf(t), torch.full_like(t, 1e3), t)
    points = scene.camera[:, None] + t[..., None] * dirs  # (B, P, 3)
    normals = torch.zeros_like(points)
    normals[..., 2] = 1.0
    albedo = torch.full_like(points, FLOOR_ALBEDO)
    hit_b, hit_p = (obj >= 0).nonzero(as_tuple=True)
    hit_k = obj[hit_b, hit_p]
    normals[hit_b, hit_p] = surface_normal(
        points[hit_b, hit_p], scene.shape[hit_b, hit_k], scene.center[hit_b, hit_k], scene.angle[hit_b, hit_k]
    )
    albedo[hit_b, hit_p] = scene.albedo[hit_b, hit_k]
    # Lift surface points off their surface before shadow rays start there.
    points = points + normals * 2e-3

    # Lambert and Blinn-Phong terms of the four lights from dot products: (B, P, 4) tensors, no per-light
    # (B, P, 3) temporaries. Point lights fall off with distance (relative to the origin), as broad area lights do.
    view = -dirs
    n_dot_v = (normals * view).sum(-1)
    lights = scene.lights[:, 1:]  # (B, 3, 3) key, fill, back
    offset_dot_n = torch.einsum("bpc,blc->bpl", normals, lights) - (normals * points).sum(-1, keepdim=True)
    p_dot_l = torch.einsum("bpc,blc->bpl", points, lights)
    dist2 = (lights * lights).sum(-1)[:, None] + (points * points).sum(-1, keepdim=True) - 2 * p_dot_l
    dist = dist2.clamp_min(1e-6).sqrt()
    offset_dot_v = torch.einsum("bpc,blc->bpl", view, lights) - (points * view).sum(-1, keepdim=True)
    strength = (lights.norm(dim=-1)[:, None] / dist).clamp(max=1.6)
    sun = torch.nn.functional.normalize(scene.lights[:, 0], dim=-1)  # (B, 3)
    n_dot_l = torch.cat(
        ((normals * sun[:, None]).sum(-1, keepdim=True), offset_dot_n / dist), -1
    )  # (B, P, 4)
    l_dot_v = torch.cat(((view * sun[:, None]).sum(-1, keepdim=True), offset_dot_v / dist), -1)
    strength = torch.cat((sun_visibility(scene, points, obj, radius)[..., None], strength), -1)
    lambert = n_dot_l.clamp_min(0) * strength
    n_dot_h = (n_dot_l + n_dot_v[..., None]) / (2 + 2 * l_dot_v).clamp_min(1e-6).sqrt()
    x4 = n_dot_h.clamp_min(0).square().square()
    gloss = SPECULAR * x4 * x4 * x4 * lambert
    light_rgb = LIGHT_RGB.to(points.device)
    radiance = AMBIENT + lambert @ light_rgb  # (B, P, 3)
    specular = gloss @ light_rgb
    color = albedo * radiance + specular
    # Far away the floor reads as a lighter, smooth backdrop.
    far = ((points[..., :2].norm(dim=-1) - 3.0) / 12.0).clamp(0, 1)
    far = (far * far * (3 - 2 * far))[..., None] * (obj < 0)[..., None]
    color = color * (1 - far) + BACKDROP * far
    return srgb_bytes(color).view(B, height, width, 3)
