"""mlaas/services/net.py's free_port: ports for servers started by another process, picked
outside the range the kernel hands to bind(0) and to outgoing connections, which several test
workers and their child processes use at once."""

from __future__ import annotations

import socket

from mlaas.services.net import _ephemeral_low, free_port, port_is_free


def test_a_free_port_is_bindable_and_below_the_ephemeral_range():
    low = _ephemeral_low()
    ports = set()
    for _ in range(20):
        # Bound at once, as callers do: with another test run on the machine, a port picked
        # earlier and bound later was once taken meanwhile.
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
            server.bind(("127.0.0.1", port))
            server.listen()
            assert not port_is_free(port)  # taken while it listens
        ports.add(port)
    assert all(1024 <= p < low for p in ports) and len(ports) > 1  # at random, not one fixed port
