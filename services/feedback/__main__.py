"""``python -m services.feedback``: its settings from the environment, JSON logs, serve until SIGTERM."""

from services.feedback.server import create_server
from shared.rpc.server import serve_main
from shared.settings import FeedbackSettings

serve_main(FeedbackSettings, create_server)
