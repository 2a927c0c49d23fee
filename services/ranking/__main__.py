from services.ranking.server import create_server
from shared.rpc.server import serve_main

serve_main("ranking", create_server)
