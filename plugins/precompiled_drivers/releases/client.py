"""The update graph's HTTP client: the only part of the wing that talks to the network.

Synchronous on purpose, so it can be tested without asyncio and run in a thread by the event trigger.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from precompiled_drivers.releases.graph import (
    EXCERPT_CHARS,
    Graph,
    GraphError,
    channel_minor,
    graph_arch,
    parse_graph,
)

if TYPE_CHECKING:
    import requests

DEFAULT_GRAPH_URL = "https://api.openshift.com/api/upgrades_info/v1/graph"


class GraphClient:
    """Fetches ``<base_url>?channel=<c>&arch=<a>``; retries connection errors, timeouts, 429 and 5xx.

    Proxies come from ``HTTPS_PROXY``/``NO_PROXY`` (requests reads them). The CA bundle is ``ca_bundle`` when
    given, else ``REQUESTS_CA_BUNDLE``/the system store. ``base_url`` can point at a disconnected mirror
    (an OpenShift Update Service).
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10,
        retries: int = 3,
        backoff: float = 1.0,
        ca_bundle: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"graph URL must be an http(s) URL, got {base_url!r}")
        if timeout <= 0 or retries < 0 or backoff < 0:
            raise ValueError("timeout must be > 0, retries and backoff >= 0")
        self.base_url = base_url
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.ca_bundle = ca_bundle
        self._sleep = sleep
        # requests is imported where it is used: the DAG file imports this module, the triggerer and the
        # cron poll are the only callers that talk HTTP.
        import requests

        self._session = requests.Session()

    def url_for(self, channel: str, graph_arch_name: str) -> str:
        """The exact URL fetched for a channel and a graph arch (used in error messages too)."""
        import requests

        req = requests.Request("GET", self.base_url, params={"channel": channel, "arch": graph_arch_name})
        return str(req.prepare().url)

    def fetch(self, channel: str, arch: str) -> Graph:
        """Fetch and parse the graph of ``channel`` for the pipeline ``arch`` (``x86_64``/``aarch64``)."""
        channel_minor(channel)
        url = self.url_for(channel, graph_arch(arch))
        return parse_graph(self.fetch_json(url), channel=channel, arch=arch)

    def fetch_json(self, url: str) -> Any:
        """GET ``url`` as JSON with retries; raises ``GraphError`` naming URL, status and a body excerpt."""
        attempt = 0
        while True:
            try:
                return self._get_once(url)
            except _Retryable as exc:
                if attempt >= self.retries:
                    raise GraphError(
                        f"{exc} (gave up after {attempt + 1} attempts)", url=url, status=exc.status
                    ) from exc
                self._sleep(self.backoff * (2**attempt))
                attempt += 1

    def _get_once(self, url: str) -> Any:
        import requests

        # verify is passed per request: a Session-level verify would lose to REQUESTS_CA_BUNDLE.
        verify: bool | str = self.ca_bundle or True
        try:
            resp = self._session.get(
                url,
                headers={"Accept": "application/json"},
                timeout=self.timeout,
                verify=verify,
                allow_redirects=True,
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _Retryable(f"GET {url} failed: {type(exc).__name__}: {exc}", status=None) from exc
        except (requests.RequestException, OSError) as exc:
            # OSError: e.g. the configured CA bundle file is missing; retrying cannot fix that.
            raise GraphError(f"GET {url} failed: {type(exc).__name__}: {exc}", url=url) from exc
        if resp.status_code == 429 or resp.status_code >= 500:
            raise _Retryable(
                f"GET {url} returned HTTP {resp.status_code}: {_excerpt(resp)}", resp.status_code
            )
        if resp.status_code != 200:
            raise GraphError(
                f"GET {url} returned HTTP {resp.status_code}: {_excerpt(resp)}",
                url=url,
                status=resp.status_code,
            )
        try:
            return resp.json()
        except ValueError:
            raise GraphError(
                f"GET {url} returned a body that is not JSON "
                f"(Content-Type {resp.headers.get('Content-Type', '?')!r}): {_excerpt(resp)}",
                url=url,
                status=resp.status_code,
            ) from None

    def close(self) -> None:
        """Close pooled connections."""
        self._session.close()


class _Retryable(Exception):
    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


def _excerpt(resp: requests.Response) -> str:
    text = " ".join(resp.text.split())
    return repr(text[:EXCERPT_CHARS] + ("..." if len(text) > EXCERPT_CHARS else ""))
