"""The two transaction families of TrustMesh-FL and their namespaces."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["FAMILIES", "FEDERATION", "IOT_DATA", "Family", "family_by_name"]


@dataclass(frozen=True, kw_only=True)
class Family:
    """A Sawtooth transaction family: name, version and its 6-hex-digit address namespace."""

    name: str
    version: str

    @property
    def namespace(self) -> str:
        """First 6 hex digits of sha512(name), as Sawtooth families derive their address prefix."""
        return hashlib.sha512(self.name.encode("utf-8")).hexdigest()[:6]


FEDERATION = Family(name="federation", version="1.0")
IOT_DATA = Family(name="iot-data", version="1.0")
FAMILIES: tuple[Family, ...] = (FEDERATION, IOT_DATA)


def family_by_name(name: str) -> Family:
    """The family called ``name``; ``KeyError`` if there is none."""
    for family in FAMILIES:
        if family.name == name:
            return family
    raise KeyError(name)
