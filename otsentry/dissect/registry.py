"""The dissector registry: which dissector a flow gets, by server port, decode-as or probe."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping

from otsentry.dissect.base import DissectorSpec

#: Built-in dissector packages; each exposes ``SPEC: DissectorSpec``.
BUILTIN: tuple[str, ...] = (
    "otsentry.dissectors.modbus",
    "otsentry.dissectors.s7comm",
    "otsentry.dissectors.opcua",
)


class UnknownProtocolError(ValueError):
    """A decode-as or config entry names a protocol no dissector provides."""


class DissectorRegistry:
    """Dissector specs by name, with the port map and the probe list a flow lookup needs."""

    def __init__(self, specs: Iterable[DissectorSpec] = ()) -> None:
        self._specs: dict[str, DissectorSpec] = {}
        self._ports: dict[tuple[str, int], DissectorSpec] = {}
        self._disabled: set[str] = set()
        for spec in specs:
            self.register(spec)

    def register(self, spec: DissectorSpec) -> None:
        """Add a dissector; its default ports map to it unless already taken."""
        if spec.name in self._specs:
            raise ValueError(f"dissector {spec.name!r} registered twice")
        self._specs[spec.name] = spec
        for port in spec.ports:
            self._ports.setdefault((spec.transport, port), spec)

    def get(self, name: str) -> DissectorSpec:
        """The spec of a protocol by name."""
        try:
            return self._specs[name]
        except KeyError:
            known = ", ".join(sorted(self._specs)) or "none"
            raise UnknownProtocolError(f"unknown protocol {name!r} (known: {known})") from None

    @property
    def names(self) -> tuple[str, ...]:
        """Registered protocol names."""
        return tuple(self._specs)

    @property
    def dump_protocols(self) -> tuple[str, ...]:
        """The protocol names ``otsentry dissect`` records can carry."""
        out: list[str] = []
        for spec in self._specs.values():
            out.extend(spec.dump_protocols or (spec.name,))
        return tuple(out)

    def set_ports(self, name: str, ports: Iterable[int], enabled: bool = True) -> None:
        """Replace a protocol's ports (from the config); disabled protocols get none."""
        spec = self.get(name)
        for key in [k for k, v in self._ports.items() if v is spec]:
            del self._ports[key]
        if not enabled:
            self._disabled.add(name)
            return
        self._disabled.discard(name)
        for port in ports:
            self._ports[(spec.transport, port)] = spec

    def decode_as(self, port: int, name: str) -> None:
        """Force a port to a protocol, like tshark's ``-d tcp.port==PORT,PROTO``."""
        spec = self.get(name)
        self._ports[(spec.transport, port)] = spec

    def port_map(self, transport: str) -> Mapping[int, DissectorSpec]:
        """Port → spec for one transport (a plain dict for the per-flow lookup)."""
        return {port: spec for (t, port), spec in self._ports.items() if t == transport}

    def probes(self, transport: str) -> tuple[DissectorSpec, ...]:
        """Specs with a probe, in registration order."""
        return tuple(
            s
            for s in self._specs.values()
            if s.probe is not None and s.transport == transport and s.name not in self._disabled
        )


def default_registry() -> DissectorRegistry:
    """A registry holding every built-in dissector."""
    specs = [importlib.import_module(mod).SPEC for mod in BUILTIN]
    return DissectorRegistry(specs)
