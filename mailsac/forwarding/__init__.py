"""Real-time fan-out: the message hub, WebSocket payloads, webhooks and Slack."""
