"""Versioned exports for serving: numbered version directories, LATEST, the promotion log.

Above `graph` (it publishes frozen graphs), below `integrations` (the
callback calls it at train end) and the command line (`promote`).
"""
