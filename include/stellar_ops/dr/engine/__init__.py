"""The restore engine: a backup streamed into a server, loaded and indexed over several sessions."""
