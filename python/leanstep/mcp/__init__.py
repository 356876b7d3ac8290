"""The MCP server: leanstep's checking as Model Context Protocol tools, over stdio and streamable HTTP.

Agents drive Lean through MCP. The tools (``mcp.tools``) are a second door onto
the services the HTTP routes answer with (``server.services``): the same
verifier, suggester and limits, the same validation and the same error words.
``mcp.server`` builds the SDK's low-level server over them; ``leanstep mcp``
serves it over stdio (``mcp.stdio``) and ``leanstep serve`` mounts it at
``/mcp`` behind the API key (``mcp.http``, ``server.mcp_routes``).
"""
