"""The packet stages built from a configuration: registry, decoder and flow table.

``Pipeline`` (replay, sensor) and the per-PDU dump (``otsentry dissect``) build them the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from otsentry.config import Config, DecodeAs
from otsentry.decode import Arp, Decoder
from otsentry.dissect.base import Tracer
from otsentry.dissect.registry import DissectorRegistry, default_registry
from otsentry.flow.table import Flow, FlowTable
from otsentry.model import Event


def configured_registry(
    config: Config,
    decode_as: Sequence[DecodeAs] = (),
    registry: DissectorRegistry | None = None,
) -> DissectorRegistry:
    """The built-in dissectors (or ``registry``) with the config's ports and decode-as rules."""
    registry = registry if registry is not None else default_registry()
    for proto in config.protocols:
        if proto.name in registry.names:
            registry.set_ports(proto.name, proto.ports, proto.enabled)
    for rule in (*config.decode_as, *decode_as):
        registry.decode_as(rule.port, rule.protocol)
    return registry


def decoder_for(config: Config, *, on_arp: Callable[[Arp], None] | None = None) -> Decoder:
    """A packet decoder with the config's fragment limits (``on_arp`` gets every ARP packet)."""
    limits = config.limits
    return Decoder(
        max_fragment_trains=limits.max_ip_fragments,
        fragment_timeout=limits.fragment_timeout,
        on_arp=on_arp,
    )


def flow_table_for(
    config: Config,
    registry: DissectorRegistry,
    on_event: Callable[[Event], None],
    *,
    on_flow_start: Callable[[Flow], None] | None = None,
    on_flow_end: Callable[[Flow], None] | None = None,
    tracer: Tracer | None = None,
) -> FlowTable:
    """A flow table with every limit of the config; the hooks see each flow begin and end."""
    limits = config.limits
    return FlowTable(
        registry,
        on_event,
        config.segment_for,
        on_flow_start=on_flow_start,
        on_flow_end=on_flow_end,
        max_flows=limits.max_flows,
        max_buffer_per_direction=limits.max_tcp_buffer_per_direction,
        max_buffer_total=limits.max_tcp_buffer_total,
        max_ooo_segments=limits.max_ooo_segments_per_direction,
        idle_timeout=limits.flow_idle_timeout,
        closed_timeout=limits.tcp_closed_timeout,
        max_open_transactions=limits.max_open_transactions_per_flow,
        transaction_timeout=limits.transaction_timeout,
        tracer=tracer,
    )
