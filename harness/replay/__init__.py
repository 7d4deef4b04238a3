"""Replay: the engine that plays one side of a cassette, its matchers, channels and reports."""
