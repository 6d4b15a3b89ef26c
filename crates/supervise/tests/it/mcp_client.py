#!/usr/bin/env python3
"""A line-driven MCP client for supervise's integration tests.

Uses the official Python MCP SDK (`pip install mcp`) over the streamable HTTP
transport, so the server is exercised by a real client, not hand-written
JSON. Usage: mcp_client.py [--modern] URL [HOST_HEADER]
(--modern: the SDK's high-level `Client`, newest protocol, no session).

After the initialize handshake it prints {"ok": true, "ready": true, ...}.
Then it reads one JSON command per line on stdin and answers on stdout:
  {"op": "list_tools"}                       -> {"ok": true, "tools": [...]}
  {"op": "call", "tool": T, "args": {...}, "progress": bool}
      -> zero or more {"event": "progress", ...} lines while waiting,
         then {"ok": true, "isError": b, "text": s, "structured": o}
  {"op": "quit"}
A failure answers {"ok": false, "error": "..."} and the driver keeps going.
"""

import asyncio
import json
import sys
import traceback

from mcp import ClientSession

try:  # mcp >= 2
    from mcp.client.streamable_http import streamable_http_client as _new_client
    from mcp.shared._httpx_utils import create_mcp_http_client
except ImportError:  # mcp 1.x
    _new_client = None
    from mcp.client.streamable_http import streamablehttp_client as _old_client


def describe(e):
    """An exception as text, with the leaves of an ExceptionGroup spelled out."""
    subs = getattr(e, "exceptions", None)
    if subs:
        return "; ".join(describe(s) for s in subs)
    return f"{type(e).__name__}: {e}"


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def connect(url, host_header):
    headers = {"Host": host_header} if host_header else None
    if _new_client is not None:
        return _new_client(url, http_client=create_mcp_http_client(headers=headers))
    return _old_client(url, headers=headers)


def dump(model):
    if hasattr(model, "model_dump"):
        return model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return model


async def handle(session, cmd):
    op = cmd.get("op")
    if op == "list_tools":
        result = await session.list_tools()
        return {"ok": True, "tools": [dump(t) for t in result.tools]}
    if op == "call":
        progress_cb = None
        if cmd.get("progress"):
            async def progress_cb(progress, total, message):
                emit({"event": "progress", "progress": progress, "total": total, "message": message})
        result = dump(await session.call_tool(cmd["tool"], cmd.get("args", {}), progress_callback=progress_cb))
        text = "\n".join(c.get("text", "") for c in result.get("content", []) if c.get("type") == "text")
        return {
            "ok": True,
            "isError": bool(result.get("isError")),
            "text": text,
            "structured": result.get("structuredContent"),
        }
    raise ValueError(f"unknown op {op!r}")


async def serve(session, ready):
    """Announces readiness, then answers commands until EOF or quit."""
    emit(ready)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        cmd = json.loads(line)
        if cmd.get("op") == "quit":
            break
        try:
            emit(await handle(session, cmd))
        except Exception as e:  # reported to the Rust test, which asserts
            emit({"ok": False, "error": describe(e)})


async def main():
    args = sys.argv[1:]
    modern = args[:1] == ["--modern"]
    if modern:
        args = args[1:]
    url = args[0]
    host_header = args[1] if len(args) > 1 else None
    if modern:
        # The SDK's high-level client: probes server/discover and speaks the
        # newest protocol the server offers (stateless requests).
        from mcp import Client

        async with Client(url) as client:
            info = dump(client.server_info) or {}
            await serve(client, {
                "ok": True,
                "ready": True,
                "server": info.get("name"),
                "protocol": str(client.protocol_version),
                "instructions": client.instructions,
            })
        return
    # The classic handshake (initialize, session id), as Claude Code does.
    async with connect(url, host_header) as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(read, write) as session:
            init = dump(await session.initialize())
            await serve(session, {
                "ok": True,
                "ready": True,
                "server": init.get("serverInfo", {}).get("name"),
                "protocol": init.get("protocolVersion"),
                "instructions": init.get("instructions"),
            })


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:
        traceback.print_exc()
        emit({"ok": False, "fatal": True, "error": describe(e)})
        sys.exit(1)
