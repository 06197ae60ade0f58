"""What the network listeners (SMTP, POP3) share: connection admission and TLS set-up."""
