"""The console's templates (Jinja2, every value escaped): whole pages, the parts the live stream sends, and
the messages actions answer with."""

import hashlib
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup


def dom_id(*names: str) -> str:
    """A stable element id for what `names` name: a live update that replaces the element keeps the keyboard's
    focus on it (htmx gives the focus back by id)."""
    return "e" + hashlib.blake2b("\0".join(names).encode(), digest_size=6).hexdigest()


class Renderer:
    def __init__(self, directory: Path) -> None:
        self._templates = Jinja2Templates(directory=directory)
        self._templates.env.trim_blocks = True
        self._templates.env.lstrip_blocks = True
        self._templates.env.globals["dom_id"] = dom_id

    def page(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        return self._templates.TemplateResponse(request, template, context, status_code=status)

    def part(self, template: str, **context: Any) -> Markup:
        """A part of a page (what the live stream sends, and what the page's template places), rendered."""
        return Markup(self._templates.get_template(template).render(context))

    def flash(self, request: Request, message: str, kind: str = "ok", status: int = 200,
              secret: str | None = None) -> HTMLResponse:
        """A message for the page's message area (whatever asked for it: htmx is told to put it there): what an
        action did, or why it was refused."""
        response = self.page(request, "flash.html", status=status, message=message, kind=kind, secret=secret)
        response.headers.update({"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"})
        return response
