"""TestCluster: the API server, kubelet and optional GPU-operator stand-in on a background thread."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from testcluster.faults import Faults
from testcluster.kubelet import Kubelet
from testcluster.scenarios import Scenarios
from testcluster.server import ApiServer
from testcluster.store import Store

DEFAULT_NAMESPACES = ("default", "kube-system")


def write_kubeconfig(path: Path, url: str, token: str, namespace: str = "default") -> Path:
    """Write a kubeconfig for ``url`` with a bearer token; returns ``path``."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testcluster", "cluster": {"server": url}}],
        "users": [{"name": "testcluster", "user": {"token": token}}],
        "contexts": [
            {
                "name": "testcluster",
                "context": {"cluster": "testcluster", "user": "testcluster", "namespace": namespace},
            }
        ],
        "current-context": "testcluster",
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


class TestCluster:
    """A Kubernetes-API-compatible test server on ``127.0.0.1:<free port>``.

    Attributes: ``url``, ``kubeconfig_path``, ``token``, ``store``, ``scenarios``, ``faults``,
    ``kubelet``, ``operator`` (a GpuOperator, None until ``enable_operator``).
    """

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, workdir: Path | None = None, kubeconfig_path: Path | None = None) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="testcluster-"))
        self.kubeconfig_path = kubeconfig_path or self.workdir / "kubeconfig"
        self.token = secrets.token_hex(16)
        self.store = Store()
        self.scenarios = Scenarios()
        self.faults = Faults()
        self.kubelet = Kubelet(self.store, self.scenarios, self.workdir, self.kubeconfig_path)
        self.faults.attach_evictor(self.kubelet.evict)
        self.operator: Any = None
        self.url = ""
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server = ApiServer(self.store, self.kubelet, self.faults, self.token)
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        for ns in DEFAULT_NAMESPACES:
            self.store.put("Namespace", {"metadata": {"name": ns}, "status": {"phase": "Active"}})

    # -- start / stop ---------------------------------------------------------------------------
    def start(self) -> TestCluster:
        """Serve on a random free port in a daemon thread; write the kubeconfig; return self."""
        started = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self.loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:  # pragma: no cover - reported to the starting thread
                failure.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=main, name="testcluster", daemon=True)
        self._thread.start()
        started.wait(30)
        if failure:
            raise RuntimeError("test cluster failed to start") from failure[0]
        write_kubeconfig(self.kubeconfig_path, self.url, self.token)
        return self

    async def _serve(self) -> None:
        self.kubelet.attach(asyncio.get_running_loop())
        self._runner = web.AppRunner(
            self._server.app(), handle_signals=False, access_log=None, shutdown_timeout=0.5
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    def call(self, coro: Any, timeout: float = 30) -> Any:
        """Run a coroutine on the cluster's loop from another thread and return its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def enable_operator(
        self, version: str = "v25.10.0", registry: str | None = None, namespace: str = "nvidia-gpu-operator"
    ) -> Any:
        """Turn on the GPU-operator stand-in pretending to be ``version`` checking ``registry``."""
        from testcluster.gpu_operator import GpuOperator

        assert self.loop is not None, "start() first"
        self.operator = GpuOperator(self.store, self.loop, version, registry, namespace)
        self.operator.start()
        return self.operator

    def stop(self) -> None:
        """Stop serving, kill host processes, remove the temp dir (when the cluster made it)."""
        if self.loop is not None and self._thread is not None and self._thread.is_alive():
            self.call(self._shutdown())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    async def _shutdown(self) -> None:
        self._server.shutting_down.set()
        if self.operator is not None:
            self.operator.stop()
        for key in list(self.kubelet.runs):
            self.kubelet._forget(key)
        if self._runner is not None:
            await self._runner.cleanup()

    def __enter__(self) -> TestCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
