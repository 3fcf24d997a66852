"""Rotation conversions as NVIDIA's N1.5 data transforms compute them, in numpy.

Isaac-GR00T's `RotationTransform` converts between representations through a rotation matrix with pytorch3d's
helpers (0.7.6, the release its lock pins); each function here is that helper term by term (quaternions real part
first, 6D = the matrix's first two rows, Euler angles intrinsic in the convention's letter order), so decoded
rotations match NVIDIA's to float rounding. The tests compare them with pytorch3d itself where NVIDIA's
environment is built. A `matrix` key holds the 3x3 matrix row-major as 9 values.
"""

import numpy as np

REPRESENTATIONS = ("axis_angle", "quaternion", "rotation_6d", "matrix", "euler_angles")
EULER_LETTERS = {"r": "X", "p": "Y", "y": "Z"}  # NVIDIA's euler_angles_<rpy order> names
WIDTHS = {"axis_angle": 3, "quaternion": 4, "rotation_6d": 6, "matrix": 9, "euler_angles": 3}


def parse(name: str) -> tuple[str, str | None]:
    """("euler_angles", "XYZ") for "euler_angles_rpy", (name, None) for the others; ValueError if unknown."""
    if name.startswith("euler_angles_"):
        order = name.removeprefix("euler_angles_")
        if len(order) == 3 and sorted(order) == ["p", "r", "y"]:
            return "euler_angles", "".join(EULER_LETTERS[c] for c in order)
    elif name in REPRESENTATIONS and name != "euler_angles":
        return name, None
    raise ValueError(f"unknown rotation type {name!r}; known: axis_angle, quaternion, rotation_6d, matrix, "
                     "euler_angles_<an order of r, p, y> (e.g. euler_angles_rpy)")


def width(name: str) -> int:
    """How many values a rotation of type `name` takes."""
    return WIDTHS[parse(name)[0]]


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    r, i, j, k = np.moveaxis(q, -1, 0)
    two_s = 2.0 / (q * q).sum(-1)
    o = np.stack((1 - two_s * (j * j + k * k), two_s * (i * j - k * r), two_s * (i * k + j * r),
                  two_s * (i * j + k * r), 1 - two_s * (i * i + k * k), two_s * (j * k - i * r),
                  two_s * (i * k - j * r), two_s * (j * k + i * r), 1 - two_s * (i * i + j * j)), -1)
    return o.reshape(q.shape[:-1] + (3, 3))


def matrix_to_quaternion(m: np.ndarray) -> np.ndarray:
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = np.moveaxis(m.reshape(m.shape[:-2] + (9,)), -1, 0)
    q_abs = np.sqrt(np.maximum(np.stack([1.0 + m00 + m11 + m22, 1.0 + m00 - m11 - m22, 1.0 - m00 + m11 - m22,
                                         1.0 - m00 - m11 + m22], -1), 0))
    by_rijk = np.stack([
        np.stack([q_abs[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01], -1),
        np.stack([m21 - m12, q_abs[..., 1] ** 2, m10 + m01, m02 + m20], -1),
        np.stack([m02 - m20, m10 + m01, q_abs[..., 2] ** 2, m12 + m21], -1),
        np.stack([m10 - m01, m20 + m02, m21 + m12, q_abs[..., 3] ** 2], -1)], -2)
    candidates = by_rijk / (2.0 * np.maximum(q_abs[..., None], q_abs.dtype.type(0.1)))
    best = np.take_along_axis(candidates, q_abs.argmax(-1)[..., None, None], -2)[..., 0, :]
    return np.where(best[..., :1] < 0, -best, best)  # standardized: real part >= 0


def _sin_half_over_angle(angles: np.ndarray, half: np.ndarray) -> np.ndarray:
    small = np.abs(angles) < 1e-6
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(small, 0.5 - angles * angles / 48, np.sin(half) / np.where(small, 1, angles))


def axis_angle_to_matrix(v: np.ndarray) -> np.ndarray:
    angles = np.linalg.norm(v, axis=-1, keepdims=True)
    half = angles * 0.5
    return quaternion_to_matrix(np.concatenate([np.cos(half), v * _sin_half_over_angle(angles, half)], -1))


def matrix_to_axis_angle(m: np.ndarray) -> np.ndarray:
    q = matrix_to_quaternion(m)
    half = np.arctan2(np.linalg.norm(q[..., 1:], axis=-1, keepdims=True), q[..., :1])
    return q[..., 1:] / _sin_half_over_angle(2 * half, half)


def _axis_rotation(axis: str, angle: np.ndarray) -> np.ndarray:
    cos, sin, one, zero = np.cos(angle), np.sin(angle), np.ones_like(angle), np.zeros_like(angle)
    flat = {"X": (one, zero, zero, zero, cos, -sin, zero, sin, cos),
            "Y": (cos, zero, sin, zero, one, zero, -sin, zero, cos),
            "Z": (cos, -sin, zero, sin, cos, zero, zero, zero, one)}[axis]
    return np.stack(flat, -1).reshape(angle.shape + (3, 3))


def euler_angles_to_matrix(e: np.ndarray, convention: str) -> np.ndarray:
    a, b, c = (_axis_rotation(axis, e[..., n]) for n, axis in enumerate(convention))
    return (a @ b) @ c


def _angle_from_tan(axis: str, other: str, data: np.ndarray, horizontal: bool, tait_bryan: bool) -> np.ndarray:
    i1, i2 = {"X": (2, 1), "Y": (0, 2), "Z": (1, 0)}[axis]
    if horizontal:
        i2, i1 = i1, i2
    even = (axis + other) in ("XY", "YZ", "ZX")
    if horizontal == even:
        return np.arctan2(data[..., i1], data[..., i2])
    if tait_bryan:
        return np.arctan2(-data[..., i2], data[..., i1])
    return np.arctan2(data[..., i2], -data[..., i1])


def matrix_to_euler_angles(m: np.ndarray, convention: str) -> np.ndarray:
    i0, i2 = "XYZ".index(convention[0]), "XYZ".index(convention[2])
    tait_bryan = i0 != i2
    if tait_bryan:
        central = np.arcsin(m[..., i0, i2] * (-1.0 if i0 - i2 in (-1, 2) else 1.0))
    else:
        central = np.arccos(m[..., i0, i0])
    return np.stack((_angle_from_tan(convention[0], convention[1], m[..., i2], False, tait_bryan), central,
                     _angle_from_tan(convention[2], convention[1], m[..., i0, :], True, tait_bryan)), -1)


def _normalize(x: np.ndarray) -> np.ndarray:  # torch.nn.functional.normalize: x / max(||x||, 1e-12)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def rotation_6d_to_matrix(d6: np.ndarray) -> np.ndarray:
    b1 = _normalize(d6[..., :3])
    b2 = _normalize(d6[..., 3:] - (b1 * d6[..., 3:]).sum(-1, keepdims=True) * b1)
    return np.stack((b1, b2, np.cross(b1, b2)), -2)


def matrix_to_rotation_6d(m: np.ndarray) -> np.ndarray:
    return m[..., :2, :].reshape(m.shape[:-2] + (6,))


def to_matrix(x: np.ndarray, name: str) -> np.ndarray:
    """(..., width(name)) rotations of type `name` -> (..., 3, 3) matrices."""
    rep, convention = parse(name)
    if rep == "euler_angles":
        return euler_angles_to_matrix(x, convention)
    if rep == "matrix":
        return x.reshape(x.shape[:-1] + (3, 3))
    return {"axis_angle": axis_angle_to_matrix, "quaternion": quaternion_to_matrix,
            "rotation_6d": rotation_6d_to_matrix}[rep](x)


def from_matrix(m: np.ndarray, name: str) -> np.ndarray:
    """(..., 3, 3) matrices -> (..., width(name)) rotations of type `name`."""
    rep, convention = parse(name)
    if rep == "euler_angles":
        return matrix_to_euler_angles(m, convention)
    if rep == "matrix":
        return m.reshape(m.shape[:-2] + (9,))
    return {"axis_angle": matrix_to_axis_angle, "quaternion": matrix_to_quaternion,
            "rotation_6d": matrix_to_rotation_6d}[rep](m)


def convert(x: np.ndarray, source: str, target: str) -> np.ndarray:
    """Rotations from type `source` to type `target` through the matrix, as NVIDIA's `RotationTransform`; a value
    that is no rotation (a zero quaternion) gives non-finite values, for the caller to refuse."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return from_matrix(to_matrix(x, source), target)
