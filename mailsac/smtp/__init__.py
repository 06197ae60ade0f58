"""The SMTP edge: aiosmtpd protocol (with streaming DATA), hooks and the reply table."""
