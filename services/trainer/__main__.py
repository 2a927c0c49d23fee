"""``python -m services.trainer``: its settings from the environment, JSON logs, serve until SIGTERM."""

from services.trainer.server import create_server
from shared.rpc.server import serve_main
from shared.settings import TrainerSettings

serve_main(TrainerSettings, create_server)
