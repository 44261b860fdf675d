"""The console's pages: server-rendered shells (Jinja2) that hold no data, and their
script and style. The script (static/console.js) asks for the token when the console has
one, reads the JSON API with it and fills the page; nothing is loaded from elsewhere."""

from __future__ import annotations

from pathlib import Path

import jinja2
from aiohttp import web

HERE = Path(__file__).parent
STATIC = HERE / "static"

PAGES = {  # path -> (template, title)
    "/": ("events.html", "Events"),
    "/events/{id}": ("event.html", "Event"),
    "/lanes": ("lanes.html", "Lanes"),
    "/dead": ("dead.html", "Dead letters"),
}


def is_open(path: str) -> bool:
    """A page shell or a static file: readable without the token (no data in it)."""
    if path.startswith("/static/") or path in ("/", "/lanes", "/dead"):
        return True
    parts = path.split("/")
    return len(parts) == 3 and parts[1] == "events" and parts[2].isdigit()


class Pages:
    def __init__(self, token_required: bool) -> None:
        self.token_required = token_required
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )

    def routes(self) -> list[web.AbstractRouteDef]:
        found: list[web.AbstractRouteDef] = [
            web.get(path, self._page(template, title)) for path, (template, title) in PAGES.items()
        ]
        found.append(web.static("/static", STATIC))
        return found

    def _page(self, template: str, title: str) -> web.Handler:
        async def show(request: web.Request) -> web.Response:
            page = self.templates.get_template(template).render(
                title=title,
                page=template.removesuffix(".html"),
                token_required=self.token_required,
            )
            return web.Response(text=page, content_type="text/html")

        return show
