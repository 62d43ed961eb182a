"""A real MCP client for tests/integration/mcp.rs: the official Python SDK
(`pip install mcp`) speaking the protocol over stdio to the server command
given as arguments.

The test drives it one request per line on stdin and reads one JSON line
per answer on stdout:

    {"op": "list_tools"}
    {"op": "list_resources"}
    {"op": "read_resource", "uri": "ward://policy"}
    {"op": "call", "name": "TOOL", "arguments": {...}}

The first line it writes is the server's `initialize` answer. EOF on stdin
closes the connection (the server then ends its session) and the script
exits once the server has.
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import Implementation


def dump(model):
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def say(value):
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


async def answer(session, request):
    op = request["op"]
    if op == "list_tools":
        return dump(await session.list_tools())
    if op == "list_resources":
        return dump(await session.list_resources())
    if op == "read_resource":
        return dump(await session.read_resource(request["uri"]))
    if op == "call":
        return dump(await session.call_tool(request["name"], request.get("arguments") or {}))
    return {"client_error": f"unknown op {op!r}"}


async def main():
    server = StdioServerParameters(
        command=sys.argv[1], args=sys.argv[2:], env=dict(os.environ), cwd=os.getcwd()
    )
    async with stdio_client(server) as (read, write):
        client = Implementation(name="ward-integration-tests", version="1.2.3")
        async with ClientSession(read, write, client_info=client) as session:
            say(dump(await session.initialize()))
            while True:
                line = await asyncio.to_thread(sys.stdin.readline)
                if not line:
                    break
                try:
                    say(await answer(session, json.loads(line)))
                except Exception as e:  # the test reads the failure
                    say({"client_error": f"{type(e).__name__}: {e}"})


asyncio.run(main())
