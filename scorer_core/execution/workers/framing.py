"""Framing for the server-worker Unix socket: an 8-byte length, then a pickle (protocol 5).

Pickle carries numpy columns as raw buffers and keeps exceptions and frames typed, with no schema
to maintain on both sides; both ends are the same code base and trust each other, since the worker
is a child process the server started. What the frames carry is typed in ``messages``;
``bench/ipc.py`` measures the encoding's cost.
"""

from __future__ import annotations

import pickle
import socket
import struct

__all__ = ["recv_frame", "send_frame"]

_LENGTH = struct.Struct("!Q")


def send_frame(sock: socket.socket, message: object) -> None:
    payload = pickle.dumps(message, protocol=5)
    sock.sendall(_LENGTH.pack(len(payload)))
    sock.sendall(payload)


def _recv_exact(sock: socket.socket, size: int) -> bytearray:
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        count = sock.recv_into(view[received:])
        if count == 0:
            raise ConnectionError("the peer closed the connection")
        received += count
    return buffer


def recv_frame(sock: socket.socket) -> object:
    (size,) = _LENGTH.unpack(_recv_exact(sock, _LENGTH.size))
    return pickle.loads(_recv_exact(sock, size))
