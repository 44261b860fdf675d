"""Answers: a team member answers a customer from Slack or Telegram, and the relay sends the
answer through OneRoute's API (README: "Answering customers").

    oneroute.py     OneRoute's "Send Session Message" call and the classifier of its answers
    model.py        the Reply a listener hands over, the ReplySource it watches
    slack_in.py     Slack thread replies: Socket Mode listener, Events API handler
    telegram_in.py  Telegram replies and forum topic messages: the getUpdates poller
"""
