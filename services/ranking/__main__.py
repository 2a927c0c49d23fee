"""``python -m services.ranking``: its settings from the environment, JSON logs, serve until SIGTERM."""

from services.ranking.server import create_server
from shared.rpc.server import serve_main
from shared.settings import RankingSettings

serve_main(RankingSettings, create_server)
