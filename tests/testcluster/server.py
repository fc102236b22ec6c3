"""HTTP routes of the test API server (aiohttp): discovery, CRUD, watch, logs, exec, faults, auth."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from testcluster import discovery, execws, resources
from testcluster.errors import ApiError
from testcluster.faults import Faults
from testcluster.kubelet import Kubelet
from testcluster.resources import ResourceType
from testcluster.selectors import SelectorError, field_matcher, label_matcher
from testcluster.store import Store

_WATCH_DEFAULT_TIMEOUT = 1800.0


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def _error(exc: ApiError) -> web.Response:
    return _json(exc.body(), exc.status)


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


class ApiServer:
    """Builds the aiohttp application around a store, a kubelet and fault rules."""

    def __init__(self, store: Store, kubelet: Kubelet, faults: Faults, token: str) -> None:
        self.store = store
        self.kubelet = kubelet
        self.faults = faults
        self.token = token
        self.shutting_down = asyncio.Event()

    def app(self) -> web.Application:
        """The application: one catch-all route, parsed by hand (Kubernetes paths are irregular)."""
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        # No authentication: client-go (kubectl) never sends a bearer token over plain HTTP, so the
        # kubeconfig's token is a placeholder and the server is reachable on 127.0.0.1 only.
        fail, wait = self.faults.check(request.method, request.path)
        if wait:
            await asyncio.sleep(wait)
        if fail is not None:
            headers = {"Retry-After": str(fail.retry_after)} if fail.retry_after is not None else None
            body = ApiError(fail.status, f"injected fault ({fail.status})").body()
            return web.json_response(body, status=fail.status, headers=headers)
        try:
            return await handler(request)
        except ApiError as exc:
            return _error(exc)
        except SelectorError as exc:
            return _error(ApiError(400, str(exc)))

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if parts == ["version"]:
            return _json(discovery.version())
        if parts in (["healthz"], ["readyz"], ["livez"]):
            return web.Response(text="ok")
        if parts and parts[0] == "api":
            if len(parts) == 1:
                return _json(discovery.api_versions())
            group, version, rest = "", parts[1], parts[2:]
        elif parts and parts[0] == "apis":
            if len(parts) == 1:
                return _json(discovery.api_group_list())
            if len(parts) == 2:
                doc = discovery.api_group(parts[1])
                if doc is None:
                    raise ApiError(404, "the server could not find the requested resource")
                return _json(doc)
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "the server could not find the requested resource")
        if not rest:
            doc = discovery.api_resource_list(group, version)
            if doc is None:
                raise ApiError(404, "the server could not find the requested resource")
            return _json(doc)
        return await self._resource(request, group, version, rest)

    def _locate(
        self, group: str, version: str, rest: list[str]
    ) -> tuple[ResourceType, str | None, str | None, str]:
        """Split the path after the group/version into (resource, namespace, name, subresource)."""
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3 and resources.find(group, version, rest[2]):
            namespace, rest = rest[1], rest[2:]
        res = resources.find(group, version, rest[0])
        if res is None or len(rest) > 3:
            raise ApiError(404, "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else ""
        if sub and sub not in res.subresources:
            raise ApiError(404, "the server could not find the requested resource")
        return res, namespace, name, sub

    async def _resource(
        self, request: web.Request, group: str, version: str, rest: list[str]
    ) -> web.StreamResponse:
        res, namespace, name, sub = self._locate(group, version, rest)
        method = request.method
        query = request.query
        if name is None:
            if method == "GET":
                match_l = label_matcher(query.get("labelSelector"))
                match_f = field_matcher(query.get("fieldSelector"))

                def match(obj: dict[str, Any]) -> bool:
                    return match_l(obj) and match_f(obj)

                if _truthy(query.get("watch")):
                    return await self._watch(request, res, namespace, match)
                items, rv = self.store.list(res, namespace, match)
                if "as=Table" in request.headers.get("Accept", ""):
                    return _json(discovery.table(res, items, rv))
                return _json(
                    {
                        "kind": f"{res.kind}List",
                        "apiVersion": res.group_version,
                        "metadata": {"resourceVersion": rv},
                        "items": items,
                    }
                )
            if method == "POST":
                if res.namespaced and not namespace:
                    raise ApiError(404, "the server could not find the requested resource")
                return _json(self.store.create(res, namespace, await request.json()), 201)
            if method == "DELETE":
                items, _ = self.store.list(res, namespace, label_matcher(query.get("labelSelector")))
                for obj in items:
                    self.store.delete(res, obj["metadata"].get("namespace"), obj["metadata"]["name"])
                return _json(
                    {
                        "kind": f"{res.kind}List",
                        "apiVersion": res.group_version,
                        "metadata": {},
                        "items": items,
                    }
                )
            raise ApiError(405, f"method {method} not allowed")
        if sub == "log":
            return await self._logs(request, namespace or "default", name)
        if sub == "exec":
            return await execws.handle_exec(request, self.kubelet, namespace or "default", name)
        if method == "GET":
            obj = self.store.get(res, namespace, name)
            if "as=Table" in request.headers.get("Accept", ""):
                return _json(discovery.table(res, [obj], obj["metadata"]["resourceVersion"]))
            return _json(obj)
        if method == "PUT":
            body = await request.json()
            if not res.unconditional_update and not (body.get("metadata") or {}).get("resourceVersion"):
                # k8s.io/apiserver pkg/registry/generic/registry/store.go Update: resourceVersion 0 on a
                # kind whose strategy refuses unconditional updates.
                group = f".{res.group}" if res.group else ""
                raise ApiError(
                    422,
                    f'{res.kind}{group} "{name}" is invalid: metadata.resourceVersion: Invalid value: 0x0: '
                    "must be specified for an update",
                )
            return _json(self.store.replace(res, namespace, name, body, sub))
        if method == "PATCH":
            content_type = request.headers.get("Content-Type", "")
            return _json(self.store.patch(res, namespace, name, content_type, await request.json(), sub))
        if method == "DELETE":
            options = await request.json() if request.can_read_body else {}
            return _json(self.store.delete(res, namespace, name, (options or {}).get("preconditions")))
        raise ApiError(405, f"method {method} not allowed")

    async def _watch(
        self, request: web.Request, res: ResourceType, namespace: str | None, match: Any
    ) -> web.StreamResponse:
        """Stream watch events as JSON lines until ``timeoutSeconds``, the client leaves or shutdown."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def deliver(event: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, event)

        initial = _truthy(request.query.get("sendInitialEvents"))
        since = None if initial else request.query.get("resourceVersion")
        cancel = self.store.watch(res, namespace, match, since, deliver, initial_events_end=initial)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        timeout = float(request.query.get("timeoutSeconds") or _WATCH_DEFAULT_TIMEOUT)
        deadline = loop.time() + timeout
        try:
            while not self.shutting_down.is_set():
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=min(left, 1.0))
                except TimeoutError:
                    continue
                await response.write((json.dumps(event) + "\n").encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            cancel()
        return response

    async def _logs(self, request: web.Request, namespace: str, name: str) -> web.StreamResponse:
        pod = self.store.get(resources.by_kind("Pod"), namespace, name)
        containers = [c["name"] for c in pod["spec"]["containers"]]
        container = request.query.get("container")
        if not container:
            if len(containers) > 1:
                raise ApiError(
                    400, f"a container name must be specified for pod {name}, choose one of: {containers}"
                )
            container = containers[0]
        inits = [c["name"] for c in pod["spec"].get("initContainers") or []]
        if container not in containers + inits:
            raise ApiError(400, f"container {container} is not valid for pod {name}")
        run = self.kubelet.run_of(namespace, name)
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        if run is None:
            await response.prepare(request)
            return response
        statuses = {s["name"]: s for s in (pod.get("status") or {}).get("containerStatuses") or []}
        waiting = (statuses.get(container, {}).get("state") or {}).get("waiting")
        if waiting and not run.logs[container].lines:
            raise ApiError(
                400, f'container "{container}" in pod "{name}" is waiting to start: {waiting.get("reason")}'
            )
        tail = request.query.get("tailLines")
        since = self.kubelet.log_since(int(request.query.get("sinceSeconds") or 0))
        await response.prepare(request)
        stream = run.logs[container].stream(
            follow=_truthy(request.query.get("follow")),
            timestamps=_truthy(request.query.get("timestamps")),
            since=since,
            tail=int(tail) if tail else None,
        )
        try:
            async for chunk in stream:
                await response.write(chunk)
                if self.shutting_down.is_set():
                    break
        except ConnectionResetError:
            pass
        return response
