"""A lean list/watch replay server for benchmarks, run in its own process.

It pre-encodes `--pods` realistic pods (kinformer.testing.make_pod, ~`--pod-bytes` of JSON
each, managedFields included) once, then serves, from ready bytes:
- LIST /api/v1/pods (paged with limit/continue, one resourceVersion), items without TypeMeta;
- WATCH /api/v1/pods?watch=1: `--events` MODIFIED events cycling over the pods, each with a
  new resourceVersion, written in large chunks at full speed, then the stream stays open
  (bookmarks are not needed: the client stops when it has counted every event);
- POST /admin/go: with `--gate`, watches hold their events until this start signal, so a
  contender starts its clock after its cache synced and before any event flows (the gate
  is level-triggered: one signal releases the next or the waiting watch);
- POST /admin/expire: open watches end and the next one answers an ERROR 410 (a relist);
- GET /admin/stats: requests served.
With `--protobuf-encoder PATH` (benchmarks/go/protoenc, built by run.py), the same pods and
events are also encoded as the API server's protobuf (by apimachinery's own encoders) and
served to a request whose Accept header asks for `application/vnd.kubernetes.protobuf`:
list pages of the page size given by `--page-size`, or the whole list without a limit, and a
watch of length-delimited WatchEvent frames (`;stream=watch`). /admin/expire is JSON-only.
The server is not the bottleneck: every contender reads the same bytes from it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys

import orjson
from aiohttp import web

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from kinformer.testing.generators import make_pod

CHUNK = 1 << 20
PROTOBUF = "application/vnd.kubernetes.protobuf"


class Protobuf:
    """The protobuf encoding of the replay's list and events (see the module docstring)."""

    def __init__(self, encoder: str, items: list[bytes], events: list[bytes], list_rv: int, page_size: int) -> None:
        records = [orjson.dumps({"list": {"resourceVersion": str(list_rv), "pageSize": page_size}})]
        records += [b'{"item":' + item + b"}" for item in items]
        records += [b'{"event":' + event + b"}" for event in events]
        out = subprocess.run([encoder], input=b"\n".join(records) + b"\n", capture_output=True, check=True).stdout
        self.page_size = page_size
        self.whole = b""
        self.pages: list[bytes] = []
        frames: list[bytes] = []
        pos = 0
        while pos < len(out):
            tag, size = out[pos:pos + 1], int.from_bytes(out[pos + 1:pos + 5], "big")
            data = out[pos + 5:pos + 5 + size]
            pos += 5 + size
            if tag == b"A":
                self.whole = data
            elif tag == b"P":
                self.pages.append(data)
            else:
                frames.append(data)
        self.stream = b"".join(frames)
        self.frame_ends = []
        end = 0
        for frame in frames:
            end += len(frame)
            self.frame_ends.append(end)


class Replay:
    def __init__(self, pods: int, pod_bytes: int, events: int, gate: bool = False, rate: float = 0.0,
                 protobuf_encoder: str = "", page_size: int = 500) -> None:
        self.gate = gate
        self.rate = rate
        self.go = asyncio.Event()
        self.base_rv = 1000
        self.items: list[bytes] = []
        for i in range(pods):
            pod = make_pod(i, f"ns-{i % 20}", size=pod_bytes)
            pod.pop("kind")
            pod.pop("apiVersion")
            pod["metadata"]["resourceVersion"] = str(self.base_rv)
            pod["metadata"]["uid"] = f"uid-{i}"
            self.items.append(orjson.dumps(pod))
        self.list_rv = self.base_rv + pods
        lines = []
        for n in range(events):
            i = n % max(pods, 1)
            pod = make_pod(i, f"ns-{i % 20}", size=pod_bytes)
            pod["metadata"]["resourceVersion"] = str(self.list_rv + 1 + n)
            pod["metadata"]["uid"] = f"uid-{i}"
            pod["status"]["podIP"] = f"10.9.{n // 256 % 256}.{n % 256}"
            lines.append(orjson.dumps({"type": "MODIFIED", "object": pod}))
        self.stream = b"\n".join(lines) + (b"\n" if lines else b"")
        self.line_ends = []  # offset just past each event line, for paced streaming
        end = 0
        for line in lines:
            end += len(line) + 1
            self.line_ends.append(end)
        self.expire_next = False
        self.expired = asyncio.Event()
        self.requests = {"list": 0, "watch": 0}
        self.protobuf = Protobuf(protobuf_encoder, self.items, lines, self.list_rv, page_size) \
            if protobuf_encoder else None

    def _wants_protobuf(self, request: web.Request) -> bool:
        return self.protobuf is not None and request.headers.get("Accept", "").startswith(PROTOBUF)

    async def pods(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        if (q.get("watch") or "").lower() in ("1", "true"):
            return await self.watch(request)
        self.requests["list"] += 1
        limit = int(q.get("limit") or 0) or len(self.items)
        start = int(q.get("continue") or 0)
        if self._wants_protobuf(request):
            proto = self.protobuf
            assert proto is not None
            if limit >= len(self.items) and not start:
                body = proto.whole
            elif limit == proto.page_size and start % limit == 0:
                body = proto.pages[start // limit]
            else:
                return web.Response(status=400, text=f"protobuf lists are pre-encoded in pages of {proto.page_size}")
            return web.Response(body=body, content_type=PROTOBUF)
        page = self.items[start:start + limit]
        meta: dict[str, object] = {"resourceVersion": str(self.list_rv)}
        if start + limit < len(self.items):
            meta["continue"] = str(start + limit)
            meta["remainingItemCount"] = len(self.items) - start - limit
        body = b'{"kind":"PodList","apiVersion":"v1","metadata":' + orjson.dumps(meta) + b',"items":[' \
            + b",".join(page) + b"]}"
        return web.Response(body=body, content_type="application/json")

    async def watch(self, request: web.Request) -> web.StreamResponse:
        self.requests["watch"] += 1
        expired = self.expired  # the event of this watch's lifetime, even if expire() replaces it meanwhile
        proto = self.protobuf if self._wants_protobuf(request) else None
        content_type = f"{PROTOBUF};stream=watch" if proto is not None else "application/json"
        resp = web.StreamResponse(headers={"Content-Type": content_type})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        if self.expire_next:
            self.expire_next = False
            status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired", "code": 410,
                      "message": "too old resource version"}
            await resp.write(orjson.dumps({"type": "ERROR", "object": status}) + b"\n")
            return resp
        if self.gate:
            await self.go.wait()
            self.go.clear()
        rv = int(request.query.get("resourceVersion") or 0)
        stream = proto.stream if proto is not None else self.stream
        start = 0
        if rv > self.list_rv:  # resume: skip events already seen (each line is one RV)
            skip = rv - self.list_rv
            if proto is not None:
                start = proto.frame_ends[skip - 1]
            else:
                pos = 0
                for _ in range(skip):
                    pos = self.stream.index(b"\n", pos) + 1
                start = pos
        view = memoryview(stream)
        if self.rate and proto is None:
            await self._paced(resp, view, start)
        else:
            for offset in range(start, len(stream), CHUNK):
                await resp.write(bytes(view[offset:offset + CHUNK]))
        await expired.wait()  # keep the watch open until the client goes, or /admin/expire
        return resp

    async def _paced(self, resp: web.StreamResponse, view: memoryview, start: int) -> None:
        """Write events at `rate` per second, in 10 ms ticks on an absolute schedule."""
        loop = asyncio.get_running_loop()
        tick = 0.01
        per_tick = max(1, round(self.rate * tick))
        first = next((i for i, end in enumerate(self.line_ends) if end > start), len(self.line_ends))
        due = loop.time()
        for i in range(first, len(self.line_ends), per_tick):
            begin = self.line_ends[i - 1] if i else 0
            end = self.line_ends[min(i + per_tick, len(self.line_ends)) - 1]
            await resp.write(bytes(view[begin:end]))
            due += tick
            await asyncio.sleep(max(0.0, due - loop.time()))

    async def expire(self, request: web.Request) -> web.Response:
        """End open watches; the next watch gets 410, so the client relists."""
        self.expire_next = True
        expired, self.expired = self.expired, asyncio.Event()
        expired.set()
        return web.json_response({"ok": True})

    async def start(self, request: web.Request) -> web.Response:
        self.go.set()
        return web.json_response({"ok": True})

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.requests)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--pod-bytes", type=int, default=3000)
    parser.add_argument("--events", type=int, default=0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--gate", action="store_true", help="hold watch events until POST /admin/go")
    parser.add_argument("--rate", type=float, default=0.0, help="events per second (0: full speed)")
    parser.add_argument("--protobuf-encoder", default="", help="benchmarks/go/protoenc binary: also serve protobuf")
    parser.add_argument("--page-size", type=int, default=500, help="the page size protobuf lists are encoded in")
    args = parser.parse_args()
    replay = Replay(args.pods, args.pod_bytes, args.events, args.gate, args.rate, args.protobuf_encoder,
                    args.page_size)
    app = web.Application()
    app.router.add_get("/api/v1/pods", replay.pods)
    app.router.add_post("/admin/expire", replay.expire)
    app.router.add_post("/admin/go", replay.start)
    app.router.add_get("/admin/stats", replay.stats)

    async def serve() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", args.port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(json.dumps({"url": f"http://127.0.0.1:{port}", "stream_bytes": len(replay.stream),
                          "list_bytes": sum(map(len, replay.items))}), flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
