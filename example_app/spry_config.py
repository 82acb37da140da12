"""``spry serve example_app``'s settings: Spry's ``spry.config.dart`` (port 4000)."""

port = 4000
