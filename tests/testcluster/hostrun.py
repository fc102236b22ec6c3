"""Pod volumes materialised as directories, and a container's command run on this machine.

Used by the kubelet stand-in: every pod gets a directory per volume (secrets and config maps written
as files, emptyDirs empty); the exec websocket reads files through the same mapping; ``run_on_host``
scenarios run the container's command with its env, the mounted paths rewritten to those dirs.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from testcluster.resources import by_kind
from testcluster.store import Store

XCOM_MOUNT_PATH = "/airflow/xcom"


def materialise_volumes(store: Store, pod: dict[str, Any], pod_dir: Path) -> dict[str, Path]:
    """Create ``pod_dir/volumes/<name>`` for each volume; return volume name -> directory."""
    namespace = pod["metadata"].get("namespace", "default")
    out: dict[str, Path] = {}
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        vdir = pod_dir / "volumes" / volume["name"]
        vdir.mkdir(parents=True, exist_ok=True)
        out[volume["name"]] = vdir
        files: dict[str, bytes] = {}
        items: list[dict[str, Any]] | None = None
        if "secret" in volume:
            src = volume["secret"]
            secret = store.find(by_kind("Secret"), namespace, src.get("secretName", ""))
            if secret is not None:
                files = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
                files.update({k: v.encode() for k, v in (secret.get("stringData") or {}).items()})
            items = src.get("items")
        elif "configMap" in volume:
            src = volume["configMap"]
            cmap = store.find(by_kind("ConfigMap"), namespace, src.get("name", ""))
            if cmap is not None:
                files = {k: v.encode() for k, v in (cmap.get("data") or {}).items()}
            items = src.get("items")
        if items:
            files = {item["path"]: files[item["key"]] for item in items if item["key"] in files}
        for rel, content in files.items():
            target = vdir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
    return out


def mount_map(container: dict[str, Any], volumes: dict[str, Path]) -> list[tuple[str, Path]]:
    """(mountPath, host path) pairs of one container, longest mountPath first."""
    pairs: list[tuple[str, Path]] = []
    for mount in container.get("volumeMounts") or []:
        base = volumes.get(mount["name"])
        if base is None:
            continue
        host = base / mount["subPath"] if mount.get("subPath") else base
        pairs.append((mount["mountPath"].rstrip("/") or "/", host))
    return sorted(pairs, key=lambda p: len(p[0]), reverse=True)


def host_path(path: str, mounts: list[tuple[str, Path]]) -> Path | None:
    """Translate a path inside the container to the materialised one (None when not on a mount)."""
    for mount_path, host in mounts:
        if path == mount_path:
            return host
        if path.startswith(mount_path + "/"):
            return host / path[len(mount_path) + 1 :]
    return None


def _rewrite(value: str, mounts: list[tuple[str, Path]]) -> str:
    translated = host_path(value, mounts)
    return str(translated) if translated is not None else value


def container_env(
    store: Store, pod: dict[str, Any], container: dict[str, Any], mounts: list[tuple[str, Path]]
) -> dict[str, str]:
    """The env a container sees: ``env`` (values, secret/configMap/field refs) and ``envFrom``."""
    namespace = pod["metadata"].get("namespace", "default")
    env: dict[str, str] = {}

    def secret_data(name: str) -> dict[str, str]:
        secret = store.find(by_kind("Secret"), namespace, name) or {}
        data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        data.update(secret.get("stringData") or {})
        return data

    def cmap_data(name: str) -> dict[str, str]:
        return (store.find(by_kind("ConfigMap"), namespace, name) or {}).get("data") or {}

    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "secretRef" in source:
            env.update({prefix + k: v for k, v in secret_data(source["secretRef"]["name"]).items()})
        if "configMapRef" in source:
            env.update({prefix + k: v for k, v in cmap_data(source["configMapRef"]["name"]).items()})
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = _rewrite(str(var["value"]), mounts)
            continue
        ref = var.get("valueFrom") or {}
        value: str | None = None
        if "secretKeyRef" in ref:
            value = secret_data(ref["secretKeyRef"]["name"]).get(ref["secretKeyRef"]["key"])
        elif "configMapKeyRef" in ref:
            value = cmap_data(ref["configMapKeyRef"]["name"]).get(ref["configMapKeyRef"]["key"])
        elif "fieldRef" in ref:
            obj: Any = pod
            for part in ref["fieldRef"]["fieldPath"].split("."):
                obj = obj.get(part) if isinstance(obj, dict) else None
            value = None if obj is None else str(obj)
        if value is not None:
            env[var["name"]] = value
    return env


def host_env(
    container_env_vars: dict[str, str], kubeconfig: Path, mounts: list[tuple[str, Path]], home: Path
) -> dict[str, str]:
    """The container env plus what makes real tools work here: PATH, KUBECONFIG, XCOM_RETURN, HOME."""
    venv_bin = str(Path(sys.executable).parent)
    env = {
        "PATH": os.pathsep.join([venv_bin, "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        **container_env_vars,
        "KUBECONFIG": str(kubeconfig),
    }
    xcom = host_path(f"{XCOM_MOUNT_PATH}/return.json", mounts)
    if xcom is not None:
        env["XCOM_RETURN"] = str(xcom)
    return env


async def run_on_host(
    command: list[str],
    env: dict[str, str],
    cwd: Path,
    on_line: Callable[[str], None],
    on_start: Callable[[asyncio.subprocess.Process], None] | None = None,
) -> int:
    """Run ``command``; every stdout/stderr line goes to ``on_line``; return the exit code.

    ``on_start`` receives the process so the kubelet can kill it on eviction or deletion.
    """
    if not command:
        on_line("testcluster: container has no command; cannot run an image entrypoint on the host")
        return 127
    try:
        proc = await asyncio.create_subprocess_exec(
            *command,
            env=env,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        on_line(f"testcluster: cannot start {command[0]!r}: {exc}")
        return 127
    if on_start is not None:
        on_start(proc)
    assert proc.stdout is not None
    async for raw in proc.stdout:
        on_line(raw.decode(errors="replace").rstrip("\n"))
    return await proc.wait()
