"""Optimization profiles: typed min/opt/max shape ranges, trtexec's ``x:1x3x224x224`` syntax, validation.

A :class:`Profile` maps each input name to a :class:`ShapeRange`. For shape-tensor inputs (inputs whose
*values* are shapes) the range holds values, not dims, exactly as in trtexec.

Everything here is pure Python: profiles are checked against the model's inputs before any build starts.
"""

from trtkit.profiles._ranges import (
    INT64_MAX,
    MAX_PROFILE_DIM,
    Profile,
    ProfilesLike,
    Shape,
    ShapeRange,
    complete_range,
    format_shape,
    normalize_profiles,
    parse_shape_spec,
    profiles_from_trtexec,
)
from trtkit.profiles._resolve import InputInfo, resolve_profiles

__all__ = [
    "INT64_MAX", "MAX_PROFILE_DIM", "InputInfo", "Profile", "ProfilesLike", "Shape", "ShapeRange", "complete_range",
    "format_shape", "normalize_profiles", "parse_shape_spec", "profiles_from_trtexec", "resolve_profiles",
]

for _obj in (InputInfo, Profile, ShapeRange, complete_range, format_shape, normalize_profiles, parse_shape_spec,
             profiles_from_trtexec, resolve_profiles):
    _obj.__module__ = __name__
del _obj
