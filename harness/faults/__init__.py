"""The fault sweep: every cassette becomes the faults a client must survive.

- ``catalogue``: which faults apply where in a cassette (``Fault``), and seeded sampling;
- ``novelty``: values a client has never seen (schema-free, or from two schema snapshots);
- ``variants``: a fault as an ordinary cassette (fault events in format v1);
- ``oracle``: survived / hung / crashed, and the sentence that says so;
- ``runner``: any client command run once per variant, a `codex` shim serving it;
- ``matrix``: the point x fault table (text, markdown, JSON);
- ``cli``: ``codex-cassette faults``.

docs/faults.md tells what it is for and what it found on real clients.
"""
