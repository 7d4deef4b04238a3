"""The cassette format: wire framing, cassettes, scenarios, placeholders, redaction, the writer."""
