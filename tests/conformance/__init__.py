"""RFC 6455 conformance: raw frames over a socket against a Spry echo route."""
