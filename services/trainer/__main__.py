"""``python -m services.trainer``: settings from the environment, JSON logs, serve until SIGTERM."""

from services.trainer.server import create_server
from shared.rpc.server import serve_main

serve_main("trainer", create_server)
