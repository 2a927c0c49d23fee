"""``python -m services.intent``: its settings from the environment, JSON logs, serve until SIGTERM."""

from services.intent.server import create_server
from shared.rpc.server import serve_main
from shared.settings import IntentSettings

serve_main(IntentSettings, create_server)
