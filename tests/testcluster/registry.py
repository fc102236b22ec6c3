"""A real OCI registry (Debian's ``docker-registry``) on 127.0.0.1, and a tiny image to push into it."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import secrets
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import requests
import yaml

REGISTRY_BIN = "/usr/bin/docker-registry"
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
# What a client that knows every format sends; the GPU-operator stand-in checks images with it.
MANIFEST_ACCEPT = ", ".join(
    (
        MANIFEST_V2,
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    )
)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Registry:
    """``docker-registry serve`` with temp storage; ``host`` is ``127.0.0.1:PORT`` (plain HTTP)."""

    def __init__(self, workdir: Path | None = None) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="testregistry-"))
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, the registry part of image references."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """Base URL of the registry HTTP API."""
        return f"http://{self.host}"

    def start(self, timeout: float = 20.0) -> Registry:
        """Start the registry and wait until ``/v2/`` answers."""
        storage = self.workdir / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        last_error: Exception | None = None
        for _ in range(3):  # another process may grab the free port between probe and bind
            self.port = free_port()
            config = {
                "version": 0.1,
                "log": {"level": "error", "accesslog": {"disabled": True}},
                "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
                "http": {"addr": self.host, "secret": secrets.token_hex(16)},
            }
            config_path = self.workdir / "config.yml"
            config_path.write_text(yaml.safe_dump(config))
            log = (self.workdir / "registry.log").open("ab")
            self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(config_path)], stdout=log, stderr=log)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if requests.get(f"{self.url}/v2/", timeout=1).status_code == 200:
                        return self
                except requests.RequestException as exc:
                    last_error = exc
                time.sleep(0.05)
            self.stop()
        raise RuntimeError(f"docker-registry did not start: {last_error}")

    def stop(self) -> None:
        """Stop the process (by its own PID) and drop temp storage when we made it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def manifest_digest(self, repo: str, tag: str) -> str | None:
        """``sha256:...`` of ``repo:tag`` (HEAD on the manifest), None when the registry lacks it."""
        resp = requests.head(
            f"{self.url}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT}, timeout=5
        )
        if resp.status_code != 200:
            return None
        return resp.headers.get("Docker-Content-Digest")

    def push_test_image(self, repo: str, tag: str, labels: dict[str, str] | None = None) -> str:
        """Push a tiny valid image (config + one tar.gz layer) as ``repo:tag``; return its digest."""
        return push_test_image(self.url, repo, tag, labels)

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _layer(content: str) -> tuple[bytes, str]:
    """A deterministic gzip'd tar with one file; returns (blob, diff_id of the uncompressed tar)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = content.encode()
        info = tarfile.TarInfo("testcluster-image.txt")
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, mtime=0), "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


def _upload_blob(base: str, repo: str, blob: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    start = requests.post(f"{base}/v2/{repo}/blobs/uploads/", timeout=10)
    start.raise_for_status()
    location = start.headers["Location"]
    if location.startswith("/"):
        location = base + location
    sep = "&" if "?" in location else "?"
    done = requests.put(
        f"{location}{sep}digest={digest}",
        data=blob,
        headers={"Content-Type": "application/octet-stream"},
        timeout=10,
    )
    done.raise_for_status()
    return digest


def push_test_image(registry: str, repo: str, tag: str, labels: dict[str, str] | None = None) -> str:
    """Upload a tiny Docker v2 schema 2 image to ``registry`` (``http://host:port`` or ``host:port``).

    ``labels`` go into the image config (as ``podman build --label`` puts them), next to a label naming it.
    """
    base = registry if registry.startswith("http") else f"http://{registry}"
    layer, diff_id = _layer(f"{repo}:{tag}\n")
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"testcluster.image": f"{repo}:{tag}", **(labels or {})}},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created_by": "testcluster push_test_image"}],
        },
        sort_keys=True,
    ).encode()
    config_digest = _upload_blob(base, repo, config)
    layer_digest = _upload_blob(base, repo, layer)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_V2,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": len(config),
                "digest": config_digest,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(layer),
                    "digest": layer_digest,
                }
            ],
        }
    ).encode()
    resp = requests.put(
        f"{base}/v2/{repo}/manifests/{tag}", data=manifest, headers={"Content-Type": MANIFEST_V2}, timeout=10
    )
    resp.raise_for_status()
    return resp.headers.get("Docker-Content-Digest") or "sha256:" + hashlib.sha256(manifest).hexdigest()
