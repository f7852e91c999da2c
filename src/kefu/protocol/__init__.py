"""The wire: frame structs, type names, status codes, encode/decode (protocol.md)."""
