"""Run the test cluster as a standalone process for the demo.

    python -m testcluster --kubeconfig PATH --pidfile PATH [--registry] [--fleet demo]
        [--operator-version v25.10.0] [--setup FILE.py]

Prints ``TESTCLUSTER_URL=...`` (and ``TESTCLUSTER_REGISTRY=127.0.0.1:PORT``), then runs until SIGTERM
or SIGINT; stop it with ``kill $(cat PIDFILE)``. ``--setup FILE.py`` must define
``setup(cluster, registry)`` (registry may be None) to set scenarios for the demo.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import sys
import threading
from pathlib import Path

from testcluster.cluster import TestCluster
from testcluster.fleet import seed_demo
from testcluster.registry import Registry


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m testcluster", description=__doc__.split("\n")[0])
    parser.add_argument("--kubeconfig", required=True, type=Path, help="where to write the kubeconfig")
    parser.add_argument("--pidfile", required=True, type=Path, help="where to write this process's PID")
    parser.add_argument("--registry", action="store_true", help="also start a docker-registry on 127.0.0.1")
    parser.add_argument("--fleet", choices=["demo"], help="seed nodes, ClusterPolicy, ClusterVersion")
    parser.add_argument(
        "--operator-version", default="v25.10.0", help="GPU Operator version to pretend to be"
    )
    parser.add_argument("--setup", type=Path, help="Python file with setup(cluster, registry)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Start, announce, wait for a signal, stop."""
    args = _parse(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    registry = Registry().start() if args.registry else None
    cluster = TestCluster(kubeconfig_path=args.kubeconfig.resolve()).start()
    try:
        if args.fleet == "demo":
            seed_demo(cluster)
            cluster.enable_operator(args.operator_version, registry=registry.host if registry else None)
        if args.setup:
            spec = importlib.util.spec_from_file_location("testcluster_setup", args.setup)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            module.setup(cluster, registry)
        args.pidfile.write_text(f"{os.getpid()}\n")
        print(f"TESTCLUSTER_URL={cluster.url}", flush=True)
        print(f"TESTCLUSTER_KUBECONFIG={cluster.kubeconfig_path}", flush=True)
        if registry is not None:
            print(f"TESTCLUSTER_REGISTRY={registry.host}", flush=True)
        stop.wait()
    finally:
        cluster.stop()
        if registry is not None:
            registry.stop()
        args.pidfile.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
