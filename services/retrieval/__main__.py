"""``python -m services.retrieval``: its settings from the environment, JSON logs, serve until SIGTERM."""

from services.retrieval.server import create_server
from shared.rpc.server import serve_main
from shared.settings import RetrievalSettings

serve_main(RetrievalSettings, create_server)
