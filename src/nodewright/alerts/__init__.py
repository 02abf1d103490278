"""Alerts: webhook endpoints and Standard Webhooks deliveries, sent as durable jobs.

``emit(session, event_type, data)`` is the interface for the rest of nodewright (docs/alerts.md).
"""

from nodewright.alerts.emit import emit
from nodewright.alerts.events import EVENT_TYPES, UnknownEventType

__all__ = ["EVENT_TYPES", "UnknownEventType", "emit"]
