"""Settings: each service's own record (``services``) on one small framework (``base``)."""

from shared.settings.base import Described, Settings
from shared.settings.keys import TokenKeys
from shared.settings.services import (
    ALL,
    DEV_TOKEN_SECRET,
    EMBEDDED,
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
    token_keys_problem,
    uses_dev_token_secret,
)

__all__ = [
    "ALL",
    "DEV_TOKEN_SECRET",
    "EMBEDDED",
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
    "TokenKeys",
    "TrainerSettings",
    "token_keys_problem",
    "uses_dev_token_secret",
]
