"""A RabbitMQ cluster of our own on loopback: LocalNodes with one cookie, formed at boot.

The nodes find each other by classic-config peer discovery (every node lists all the others in
its ``rabbitmq.conf``: https://www.rabbitmq.com/docs/cluster-formation#peer-discovery-classic-config).
They share one random Erlang cookie of their own, so none can ever join, or be joined by, the
machine's shared node ``rabbit@localhost``; see ``devbroker.node`` for what else keeps them
apart from it.

    python -m devbroker.cluster start|stop|status [--dir DIR] [--base-port PORT]

``start`` leaves the nodes running (detached, state in ``DIR/cluster.json``) and prints the
``WQ_AMQP_URL`` that lists them; ``stop`` stops them and deletes ``DIR``. Tests use
``LocalCluster`` in process instead, where a watchdog stops the nodes should the test die.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Self
from uuid import uuid4

from devbroker.node import RESERVED_PORTS, LocalNode, NodeError, RabbitmqctlError, new_cookie

DEFAULT_DIR = Path("/tmp/wq-cluster")
DEFAULT_BASE_PORT = 5681
# Erlang distribution ports sit this far above the AMQP ones, as 25672 does above 5672.
DIST_OFFSET = 20000
STATE_FILE = "cluster.json"


def _cluster_config(nodes: Sequence[str]) -> str:
    # What deploy/rabbitmq-cluster.conf says for the compose cluster: peer discovery, and new
    # quorum queue leaders spread over the nodes instead of on the declaring client's node.
    lines = ["cluster_formation.peer_discovery_backend = classic_config"]
    lines += [f"cluster_formation.classic_config.nodes.{i} = {n}" for i, n in enumerate(nodes, 1)]
    lines.append("queue_leader_locator = balanced")
    return "\n".join(lines) + "\n"


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return port not in RESERVED_PORTS


class LocalCluster:
    """``size`` nodes of our own, clustered; use ``with`` or ``start``/``stop``."""

    def __init__(
        self,
        size: int = 3,
        *,
        name_prefix: str = "wqcluster",
        base_dir: Path | None = None,
        base_port: int | None = None,
    ) -> None:
        tag = uuid4().hex[:6]
        names = [f"{name_prefix}-{tag}-{i}@localhost" for i in range(1, size + 1)]
        ports: list[tuple[int | None, int | None]] = [(None, None)] * size
        if base_port is not None:
            ports = [(base_port + i, base_port + DIST_OFFSET + i) for i in range(size)]
            busy = [p for pair in ports for p in pair if p is None or not _port_is_free(p)]
            if busy:
                raise NodeError(f"ports in use or reserved: {busy}; pick another --base-port")
        cookie, config = new_cookie(), _cluster_config(names)
        self.nodes = [
            LocalNode(
                node=name,
                amqp_port=amqp,
                dist_port=dist,
                base_dir=None if base_dir is None else base_dir / name.partition("@")[0],
                cookie=cookie,
                extra_config=config,
            )
            for name, (amqp, dist) in zip(names, ports, strict=True)
        ]
        self.base_dir = base_dir

    @classmethod
    def load(cls, base_dir: Path) -> LocalCluster:
        """The cluster a detached ``start`` saved in ``base_dir``."""
        state = json.loads((base_dir / STATE_FILE).read_text())
        cluster = cls.__new__(cls)
        cluster.base_dir = base_dir
        cluster.nodes = [
            LocalNode.attach(n["node"], n["amqp_port"], n["dist_port"], Path(n["base_dir"]))
            for n in state["nodes"]
        ]
        return cluster

    def save(self) -> None:
        """Write the nodes' names, ports and folders to ``base_dir`` for a later ``load``."""
        if self.base_dir is None:
            raise NodeError("a cluster without base_dir has nothing to save to")
        nodes = [
            {"node": n.node, "amqp_port": n.amqp_port, "dist_port": n.dist_port}
            | {"base_dir": str(n.base_dir)}
            for n in self.nodes
        ]
        (self.base_dir / STATE_FILE).write_text(json.dumps({"nodes": nodes}, indent=2) + "\n")

    @property
    def urls(self) -> list[str]:
        """Every node's AMQP URL, in node order."""
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        """The value of ``WQ_AMQP_URL`` that lists every node."""
        return ",".join(self.urls)

    def node(self, name: str) -> LocalNode:
        """The node called ``name`` (``x@localhost``)."""
        return next(node for node in self.nodes if node.node == name)

    # --------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 150.0, *, detach: bool = False) -> None:
        """Boot the first node, then the others one by one (each joins it), and wait for all.

        One at a time: two nodes that boot together may each ask the other, neither of them a
        member yet, and end up in separate clusters.
        """
        deadline = time.monotonic() + timeout
        try:
            for node in self.nodes:
                node.launch(detach=detach)
                node.wait_started(deadline)
            self.wait_for_members(len(self.nodes), deadline=deadline)
        except BaseException:
            self.stop()
            raise

    def boot_together(self, order: Sequence[LocalNode], timeout: float = 150.0) -> None:
        """Boot stopped nodes of a formed cluster all at once, in ``order``, and wait for all.

        What ``docker compose up`` does when no node waits for another's health: whichever
        node stopped first, the nodes it waits for at boot (3.x waits for the one that stopped
        last, 4.x with Khepri for a majority) are booting beside it.
        """
        deadline = time.monotonic() + timeout
        for node in order:
            node.launch()
        for node in order:
            node.wait_started(deadline)
        self.wait_for_members(len(self.nodes), deadline=deadline)

    def stop(self) -> None:
        """Stop every node (together) and delete their folders; safe on dead nodes."""
        with ThreadPoolExecutor(max_workers=len(self.nodes)) as pool:
            list(pool.map(lambda node: node.stop(), self.nodes))
        if self.base_dir is not None:
            with contextlib.suppress(OSError):
                (self.base_dir / STATE_FILE).unlink(missing_ok=True)
                self.base_dir.rmdir()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ probes

    def running_members(self) -> list[str]:
        """Cluster members that are running, as the first answering node reports them."""
        for node in self.nodes:
            if not node.running:
                continue
            with contextlib.suppress(RabbitmqctlError):
                status = node.rabbitmqctl("cluster_status", "--formatter", "json", timeout=30)
                return sorted(json.loads(status.stdout)["running_nodes"])
        return []

    def wait_for_members(self, count: int, *, deadline: float) -> None:
        """Wait until ``count`` nodes run as members of one cluster."""
        while len(members := self.running_members()) < count:
            if time.monotonic() > deadline:
                raise NodeError(f"only {members} of {count} nodes joined the cluster")
            time.sleep(0.5)

    def queue_leader(self, queue: str, vhost: str = "/") -> str:
        """The node that leads quorum queue ``queue`` now, asked of a running node."""
        errors = []
        for node in (n for n in self.nodes if n.running):
            try:
                listed = node.rabbitmqctl(
                    "list_queues", "-p", vhost, "name", "leader", "--formatter", "json"
                )
            except RabbitmqctlError as exc:
                errors.append(str(exc))
                continue
            for row in json.loads(listed.stdout):
                if row["name"] == queue:
                    return str(row["leader"])
            raise NodeError(f"no queue {queue!r} in vhost {vhost!r}")
        raise NodeError("no running node answered:\n" + "\n".join(errors))


# ----------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``start``, ``stop`` or ``status`` of the detached cluster kept in ``--dir``."""
    parser = argparse.ArgumentParser(prog="python -m devbroker.cluster", description=__doc__)
    parser.add_argument("command", choices=("start", "stop", "status"))
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="state and node folders")
    parser.add_argument(
        "--base-port",
        type=int,
        default=DEFAULT_BASE_PORT,
        help=f"AMQP port of node 1 (then +1, +2; distribution ports +{DIST_OFFSET})",
    )
    parser.add_argument("--size", type=int, default=3, help="number of nodes (start only)")
    args = parser.parse_args(argv)
    state = args.dir / STATE_FILE
    try:
        if args.command == "start":
            if state.exists():
                print(f"a cluster is already kept in {args.dir}; stop it first", file=sys.stderr)
                return 1
            args.dir.mkdir(parents=True, exist_ok=True)
            cluster = LocalCluster(args.size, base_dir=args.dir, base_port=args.base_port)
            cluster.start(detach=True)
            cluster.save()
            _print_status(cluster)
            return 0
        if not state.exists():
            print(f"no cluster kept in {args.dir}", file=sys.stderr)
            return 0 if args.command == "stop" else 3
        cluster = LocalCluster.load(args.dir)
        if args.command == "stop":
            cluster.stop()
            print(f"stopped {len(cluster.nodes)} nodes and removed {args.dir}")
            return 0
        _print_status(cluster)
        return 0 if all(node.running for node in cluster.nodes) else 3
    except NodeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _print_status(cluster: LocalCluster) -> None:
    members = cluster.running_members()
    for node in cluster.nodes:
        state = "member" if node.node in members else ("up" if node.running else "down")
        print(f"{node.node}  amqp 127.0.0.1:{node.amqp_port}  dist {node.dist_port}  {state}")
    print(f"WQ_AMQP_URL={cluster.url}")


if __name__ == "__main__":
    sys.exit(main())
