"""The Spry WebSocket tutorial's echo chat server, on aiohttp_spry.

Run it with ``python -m example_app`` or ``adev runserver example_app --port 4000``,
or as the tutorial's project folder (``routes/``, ``spry_config.py``) with
``spry serve example_app --port 4000``;
talk to it with ``python -m example_app.client``.
"""
