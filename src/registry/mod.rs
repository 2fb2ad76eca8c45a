//! Registry HTTP API v2 client.
