"""Answers: a team member answers a customer from Slack or Telegram, and the relay sends the
answer through OneRoute's API (README: "Answering customers").

    oneroute.py   OneRoute's "Send Session Message" call and the classifier of its answers
"""
