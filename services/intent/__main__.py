from services.intent.server import create_server
from shared.rpc.server import serve_main

serve_main("intent", create_server)
