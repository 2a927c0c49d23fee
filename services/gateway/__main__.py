from services.gateway.server import create_server
from shared.rpc.server import serve_main

serve_main("gateway", create_server)
