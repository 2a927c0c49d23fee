from services.retrieval.server import create_server
from shared.rpc.server import serve_main

serve_main("retrieval", create_server)
