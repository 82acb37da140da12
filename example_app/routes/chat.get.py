"""``GET /chat``: the tutorial's route, exactly as the decorator app serves it."""

from example_app.chat import chat as handler

__all__ = ["handler"]
