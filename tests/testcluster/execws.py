"""The pod exec websocket (``v4.channel.k8s.io`` / ``v5.channel.k8s.io``).

No command runs on the host through exec: a tiny interpreter understands what clients send here,
``cat FILE``, the KPO XCom read (``if [ -s F ]; then cat F; else echo X; fi``), ``echo`` and ``kill``
(which stops the XCom sidecar). Files are read from the pod's materialised volumes.
"""

from __future__ import annotations

import json
import re

from aiohttp import WSMsgType, web

from testcluster import hostrun
from testcluster.kubelet import Kubelet, PodRun

STDOUT, STDERR, ERROR = 1, 2, 3
_IF_CAT = re.compile(r"if \[ -s (\S+) \]; then cat (\S+); else echo (\S+); fi")
_CAT = re.compile(r"^\s*cat\s+(\S+)\s*$")
_ECHO = re.compile(r"^\s*echo\s+(.*?)\s*$")


class _Shell:
    """Evaluate one command line in a container; results are (stdout, stderr, exit code, killed)."""

    def __init__(self, kubelet: Kubelet, run: PodRun, container: str) -> None:
        self.kubelet = kubelet
        self.run = run
        self.container = container

    def _read(self, path: str) -> bytes | None:
        host = hostrun.host_path(path, self.run.mounts.get(self.container, []))
        if host is None or not host.is_file():
            return None
        return host.read_bytes()

    def _cat(self, path: str) -> tuple[bytes, bytes, int]:
        data = self._read(path)
        if data is None:
            return b"", f"cat: can't open '{path}': No such file or directory\n".encode(), 1
        return data, b"", 0

    def eval(self, line: str) -> tuple[bytes, bytes, int, bool]:
        if re.search(r"\bkill\b", line):
            self.kubelet.kill_container(self.run, self.container)
            return b"", b"", 0, True
        if m := _IF_CAT.search(line):
            data = self._read(m[1])
            if data:
                return data, b"", 0, False
            return (m[3] + "\n").encode(), b"", 0, False
        if m := _CAT.match(line):
            return (*self._cat(m[1]), False)
        if m := _ECHO.match(line):
            return (m[1] + "\n").encode(), b"", 0, False
        return b"", f"testcluster: unsupported exec command: {line}\n".encode(), 126, False


def _status(code: int) -> bytes:
    if code == 0:
        body = {"metadata": {}, "status": "Success"}
    else:
        body = {
            "metadata": {},
            "status": "Failure",
            "message": f"command terminated with non-zero exit code: {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
        }
    return json.dumps(body).encode()


async def handle_exec(
    request: web.Request, kubelet: Kubelet, namespace: str, name: str
) -> web.StreamResponse:
    """Serve ``GET /api/v1/namespaces/NS/pods/NAME/exec`` as a channel websocket."""
    run = kubelet.run_of(namespace, name)
    pod_containers = [c["name"] for c in run.pod["spec"]["containers"]] if run else []
    container = request.query.get("container") or (pod_containers[0] if pod_containers else "")
    if run is None or container not in run.running:
        raise web.HTTPBadRequest(
            text=json.dumps(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "code": 400,
                    "reason": "BadRequest",
                    "message": f"container {container} is not running in pod {name}",
                }
            ),
            content_type="application/json",
        )
    command = request.query.getall("command", [])
    ws = web.WebSocketResponse(protocols=("v5.channel.k8s.io", "v4.channel.k8s.io"))
    await ws.prepare(request)
    shell = _Shell(kubelet, run, container)

    async def reply(out: bytes, err: bytes, code: int) -> None:
        if out:
            await ws.send_bytes(bytes([STDOUT]) + out)
        if err:
            await ws.send_bytes(bytes([STDERR]) + err)
        await ws.send_bytes(bytes([ERROR]) + _status(code))

    script = None
    if len(command) >= 3 and command[1] == "-c":
        script = command[2]
    elif command and command[0] not in ("sh", "/bin/sh", "bash", "/bin/bash"):
        script = " ".join(command)
    if script is not None:
        out, err, code, killed = shell.eval(script)
        if not killed:
            await reply(out, err, code)
        await ws.close()
        return ws

    # An interactive shell: evaluate stdin line by line until kill or the client closes.
    pending = b""
    async for msg in ws:
        if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
            break
        data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
        if not data or data[0] != 0:
            continue
        pending += data[1:]
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            out, err, code, killed = shell.eval(line.decode(errors="replace"))
            if killed:
                await ws.close()
                return ws
            if out:
                await ws.send_bytes(bytes([STDOUT]) + out)
            if err:
                await ws.send_bytes(bytes([STDERR]) + err)
    await ws.close()
    return ws
