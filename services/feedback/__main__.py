"""``python -m services.feedback``: settings from the environment, JSON logs, serve until SIGTERM."""

from services.feedback.server import create_server
from shared.rpc.server import serve_main

serve_main("feedback", create_server)
