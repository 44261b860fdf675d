"""Answers: a team member answers a customer from Slack or Telegram, and the relay sends the
answer through OneRoute's API (README: "Answering customers").

    oneroute.py     OneRoute's "Send Session Message" call and the classifier of its answers
    model.py        the Reply a listener hands over, the ReplySource it watches
    slack_in.py     Slack thread replies: Socket Mode listener, Events API handler
    telegram_in.py  Telegram replies and forum topic messages: the getUpdates poller
    intake.py       the conversation of a reply; the answer stored before it is acknowledged
    send.py         the answer lanes' sender: numbers, OneRoute, the outcome
    feedback.py     a reaction or a reply where the answer was written
    echo.py         OneRoute's echo of an answer is not posted back where it came from
    lease.py        one reader of a Telegram bot's updates among several instances
    wiring.py       listeners, answer lanes and POST /slack/events in a running relay
    doctor.py       relay doctor's checks of what answers need
"""
