"""Settings: each service's own record (``services``) on one small framework (``base``)."""

from shared.settings.base import Described, Settings
from shared.settings.services import (
    ALL,
    DEV_TOKEN_SECRET,
    EMBEDDED,
    METRICS_PORT_OFFSET,
    MODES,
    PORTS,
    PRODUCTION,
    SERVICES,
    ClientSettings,
    FeedbackSettings,
    GatewaySettings,
    IntentSettings,
    RankingSettings,
    RecommendSettings,
    RetrievalSettings,
    ServiceSettings,
    TrainerSettings,
)

__all__ = [
    "ALL",
    "DEV_TOKEN_SECRET",
    "EMBEDDED",
    "METRICS_PORT_OFFSET",
    "MODES",
    "PORTS",
    "PRODUCTION",
    "SERVICES",
    "ClientSettings",
    "Described",
    "FeedbackSettings",
    "GatewaySettings",
    "IntentSettings",
    "RankingSettings",
    "RecommendSettings",
    "RetrievalSettings",
    "ServiceSettings",
    "Settings",
    "TrainerSettings",
]
