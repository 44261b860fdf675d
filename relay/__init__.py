"""oneroute-relay: OneRoute events, verified, stored durably, relayed to Slack and Telegram."""

__version__ = "0.1.0"
