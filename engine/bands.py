"""Band lists: parsing what users type, and picking a natural-colour view."""

from __future__ import annotations

from .errors import InputError


def parse_bands(text: str | None) -> list[int] | None:
    """'3,2,1' (spaces allowed) -> [3, 2, 1]; empty -> None (all bands / matched by name)."""
    parts = [p for p in (text or "").replace(" ", "").split(",") if p]
    try:
        bands = [int(p) for p in parts]
    except ValueError:
        raise InputError(f"bands must be 1-based band numbers separated by commas, e.g. 3,2,1; got {text!r}") from None
    if any(b < 1 for b in bands):
        raise InputError(f"band numbers start at 1; got {text!r}")
    return bands or None


def display_bands(names: list[str]) -> list[int]:
    """0-based indexes of a natural-colour composite among the bands, if there is one."""
    lower = [n.lower() for n in names]
    for triple in (("b04", "b03", "b02"), ("red", "green", "blue"), ("b4", "b3", "b2")):
        if all(t in lower for t in triple):
            return [lower.index(t) for t in triple]
    return [0, 1, 2] if len(names) >= 3 else [0, 0, 0]
