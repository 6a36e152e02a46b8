"""MCP servers the tests run as real processes (stdio) or on a loopback port (Streamable HTTP)."""
