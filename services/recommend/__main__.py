"""``python -m services.recommend``: its settings from the environment, JSON logs, serve until SIGTERM."""

from services.recommend.server import create_server
from shared.rpc.server import serve_main
from shared.settings import RecommendSettings

serve_main(RecommendSettings, create_server)
