"""The read-only catalog endpoints: server types, locations, ISOs (images: :mod:`.images`)."""

from __future__ import annotations

from nodewright.sim import catalog
from nodewright.sim.listing import bool_param, paginate, sort_items
from nodewright.sim.store import JSON, Query, Store


class CatalogResource(Store):
    @staticmethod
    def list_server_types(query: Query) -> JSON:
        names = query.get("name", [])
        items = [st for st in catalog.SERVER_TYPES if st.listed() and (not names or st.name == names[-1])]
        page, meta = paginate(items, query)
        return {"server_types": [st.to_json() for st in page], "meta": meta}

    @staticmethod
    def list_locations(query: Query) -> JSON:
        names = query.get("name", [])
        items = [loc for loc in catalog.LOCATIONS if not names or loc.name == names[-1]]
        items = sort_items(items, query.get("sort", []), {"id": lambda x: x.id, "name": lambda x: x.name})
        page, meta = paginate(items, query)
        return {"locations": [loc.to_json() for loc in page], "meta": meta}

    @staticmethod
    def list_isos(query: Query) -> JSON:
        names = query.get("name", [])
        architectures = set(query.get("architecture", []))
        wildcard = bool_param(
            query.get("include_architecture_wildcard", []), "include_architecture_wildcard", False
        )
        items = [
            iso
            for iso in catalog.ISOS
            if (not names or iso.name == names[-1])
            and (
                not architectures
                or iso.architecture in architectures
                or (wildcard and iso.architecture is None)
            )
        ]
        page, meta = paginate(items, query)
        return {"isos": [iso.to_json() for iso in page], "meta": meta}
