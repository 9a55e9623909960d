"""Delivery channels: how a rendered message leaves the engine (email: SMTP or a file outbox)."""
