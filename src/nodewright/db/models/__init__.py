"""All ORM models; importing this package registers every table on ``Base.metadata``."""

from nodewright.db.models.audit import AuditEvent
from nodewright.db.models.auth import ApiToken, User, WebSession
from nodewright.db.models.gates import FeatureGate
from nodewright.db.models.idempotency import IdempotencyKey
from nodewright.db.models.jobs import Job, JobEvent, JobStep, WorkerRecord
from nodewright.db.models.login_failures import LoginFailure
from nodewright.db.models.meta import AppMeta
from nodewright.db.models.nodes import Node, OrphanServer
from nodewright.db.models.providers import ProviderConnection
from nodewright.db.models.secrets import StoredSecret
from nodewright.db.models.watching import (
    MaintenanceWindow,
    NodeCheck,
    NodeCheckDay,
    NodeHealth,
    NodeRemediation,
    RemediationBrake,
    WatchSweep,
)
from nodewright.db.models.webhooks import WebhookDelivery, WebhookEndpoint

__all__ = [
    "ApiToken",
    "AppMeta",
    "AuditEvent",
    "FeatureGate",
    "IdempotencyKey",
    "Job",
    "JobEvent",
    "JobStep",
    "LoginFailure",
    "MaintenanceWindow",
    "Node",
    "NodeCheck",
    "NodeCheckDay",
    "NodeHealth",
    "NodeRemediation",
    "OrphanServer",
    "ProviderConnection",
    "RemediationBrake",
    "StoredSecret",
    "User",
    "WatchSweep",
    "WebSession",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WorkerRecord",
]
