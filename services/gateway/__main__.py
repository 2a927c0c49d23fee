"""``python -m services.gateway``: its settings from the environment, JSON logs, serve until SIGTERM."""

from services.gateway.server import create_server
from shared.rpc.server import serve_main
from shared.settings import GatewaySettings

serve_main(GatewaySettings, create_server)
