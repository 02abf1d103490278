"""The API's removed fields, for clients written before Hetzner removed them (opt-in).

Hetzner removed ``datacenter`` from Server objects (announced 2025-12-16, removed after 2026-07-01;
see the changelog entry "phasing out datacenters"). Clients released before that still read it:
the ``hetzner.hcloud`` Ansible collection 5.4.0 (the one in ``ansible`` 12.3.0) fails right after
creating a server (``server.datacenter.location``). Against Hetzner today such a client fails the
same way; the simulator answers as Hetzner does unless ``legacy_datacenter`` is on, which adds the
field back in its old shape so that operators can still exercise old tooling. Names and ids are the
datacenters each location had (one per location when they were removed).
"""

from __future__ import annotations

from typing import Any

from nodewright.sim import catalog

# location -> (datacenter id, name, description), as GET /datacenters answered before the removal.
DATACENTERS: dict[str, tuple[int, str, str]] = {
    "nbg1": (2, "nbg1-dc3", "Nuremberg 1 virtual DC 3"),
    "hel1": (3, "hel1-dc2", "Helsinki 1 virtual DC 2"),
    "fsn1": (4, "fsn1-dc14", "Falkenstein 1 virtual DC 14"),
    "ash": (5, "ash-dc1", "Ashburn virtual DC 1"),
    "hil": (6, "hil-dc1", "Hillsboro virtual DC 1"),
    "sin": (7, "sin-dc1", "Singapore virtual DC 1"),
}


def datacenter(location: str) -> dict[str, Any] | None:
    """The removed ``datacenter`` object of a server in ``location`` (None for a location that
    never had one in this table)."""
    entry = DATACENTERS.get(location)
    if entry is None:
        return None
    dc_id, name, description = entry
    supported = [st.id for st in catalog.SERVER_TYPES if location in st.locations]
    available = [st.id for st in catalog.SERVER_TYPES if st.sold_in(location)]
    return {
        "id": dc_id,
        "name": name,
        "description": description,
        "location": catalog.location_by_name(location).to_json(),
        "server_types": {
            "supported": supported,
            "available": available,
            "available_for_migration": available,
        },
    }
