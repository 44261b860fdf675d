"""The operator console: a web page and a JSON API on a listener of their own (`admin:`),
apart from the public webhook port (README: "Operator console").

auth.py     who may ask: the bearer token, the Host on loopback, and other origins refused
api.py      the JSON API; pages.py the page shells and their static files
views.py    the store's rows as the API's JSON (never a secret: the relay's Redactor)
app.py      the aiohttp application and its listener
"""
