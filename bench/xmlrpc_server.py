"""The legacy peer: Python's stock SimpleXMLRPCServer with a trivial
GetProgress (what a site would otherwise run). Usage: xmlrpc_server.py PORT.
Prints "listening on http://ADDR" on stderr once it accepts connections."""
import sys
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer


class Handler(SimpleXMLRPCRequestHandler):
    rpc_paths = ("/", "/RPC2")

    def log_message(self, *args):
        pass


class Server(SimpleXMLRPCServer):
    request_queue_size = 1024


def get_progress(job, *rest):
    return {"ResultCode": 0, "ErrorMessage": "", "Progress": 0}


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = Server(("127.0.0.1", port), requestHandler=Handler,
                    logRequests=False, allow_none=True)
    server.register_function(get_progress, "GetProgress")
    server.register_function(get_progress, "GetJob")
    host, port = server.server_address[:2]
    print(f"listening on http://{host}:{port}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
