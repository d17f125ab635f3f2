"""The demo's dashboard forwarder: runs in the client's namespace, accepts on a listening
socket opened in the host's namespace (inherited as a file descriptor: a socket keeps the
namespace it was made in) and relays each connection to the VIP's dashboard, which the
MASTER answers. One thread per direction; a connection that fails is closed."""

from __future__ import annotations

import socket
import sys
import threading

CONNECT_TIMEOUT = 5.0


def pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def relay(client: socket.socket, host: str, port: int) -> None:
    try:
        upstream = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
    except OSError:
        client.close()
        return
    upstream.settimeout(None)
    threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
    pipe(client, upstream)


def main(argv: list[str]) -> None:
    listener = socket.socket(fileno=int(argv[0]))
    listener.setblocking(True)       # the demo's gevent made it non-blocking: it is shared
    host, port = argv[1], int(argv[2])
    while True:
        client, _ = listener.accept()
        threading.Thread(target=relay, args=(client, host, port), daemon=True).start()


if __name__ == "__main__":
    main(sys.argv[1:])
