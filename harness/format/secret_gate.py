"""The cheap look before redaction: whether a value may hold anything a rule could find.

Importing the redaction machinery (harness.format.redact) costs a cold fake more than
answering a handshake, and most reports hold nothing to scrub: a few paths, a status.
So a report passes this gate first, and only what may hold a secret goes on to the
``Redactor``. The gate is a superset of the built-in detectors, of secret-named fields
and of this environment's secret-looking values: False means none of them could match.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Mapping

GITLAB_PREFIXES = ("glpat", "gldt", "glrt", "glptt", "glcbt", "gloas", "glft", "glsoat", "glimt", "glagent")

# One look at a lowered text says whether any built-in detector could match it: every trigger
# of harness.format.detectors, lowered, spelled as a tree so the regex engine tries few branches
# per position (a test checks the cover); one pass over the lowered text costs half of two
# passes, cased and not. ``//`` stands for ``://`` (a colon is in every JSON line); ``\\u`` and
# ``\\/``: JSON escapes can hide a trigger, and then only the decoded text can tell. The words
# of every secret-named field are in it too (token, key, pass, ...).
GATE = re.compile(r"a(?:kia|sia|bia|cca|3t|iza|uthorization)|private key|g(?:h[pousr]_|ithub_pat_|l(?:%s)-)"
                  r"|x(?:ox|app-)|hooks\.slack\.com|s(?:k-|ecret|haredaccess|ervice_account)|eyj|//|@|\\[u/]"
                  r"|token|key|p(?:ass|wd)|c(?:redential|ookie)|b(?:earer|asic)" % "|".join(p[2:] for p in GITLAB_PREFIXES))

# Variables whose values are redacted literally, by a word in their name ...
SECRET_ENV_NAME = re.compile(r"KEY|TOKEN|SECRET|PASS|CREDENTIAL|AUTH|COOKIE|SESSION|DSN|DATABASE_URL", re.I)
# ... except these, whose values are paths, sockets or desktop names that messages do carry.
NOT_SECRET_ENV = re.compile(r"^(?:XDG_SESSION_\w+|DESKTOP_SESSION|SESSION_MANAGER|DBUS_SESSION_BUS_ADDRESS|"
                            r"SSH_AUTH_SOCK|XAUTHORITY|\w*ASKPASS\w*|KEYTIMEOUT)$")
LONG_LITERAL = 8   # from this length a value is matched anywhere, as part of a longer string too
SHORT_LITERAL = 4  # shorter values of secret-looking names are not redacted (1, true, yes)


def secret_env_values(env: Mapping[str, str]) -> list[tuple[str, str]]:
    """(name, value) of the variables whose name looks secret (…_KEY, …TOKEN, DATABASE_URL, …)
    and whose value could be one, sorted by name."""
    found = []
    for name, value in sorted(env.items()):
        if not SECRET_ENV_NAME.search(name) or NOT_SECRET_ENV.match(name) or "redacted" in value:
            continue
        if value.startswith(("/", "~")) or len(value) < SHORT_LITERAL:
            continue  # paths appear in messages; 1, yes, true say nothing
        if len(value) < LONG_LITERAL and value.isalpha() and value.islower():
            continue  # a short plain word (a desktop's name) is no secret
        found.append((name, value))
    return found


def may_hold_secret(value: Any, literals: tuple[str, ...]) -> bool:
    """Whether a built-in detector, a secret-named field or one of ``literals`` (the values
    of ``secret_env_values``) could find anything in ``value``, a JSON value or a text.
    Every string is looked at, keys too; numbers and booleans only matter under a secret-named
    key, which the key's own look catches. A backslash may be a JSON escape hiding a literal:
    such a string may hold one."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            texts: Any = (item,)
        elif isinstance(item, dict):
            stack.extend(item.values())
            texts = [k if isinstance(k, str) else str(k) for k in item]
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
            continue
        else:
            continue
        for text in texts:
            if GATE.search(text.lower()) or (literals and ("\\" in text or any(v in text for v in literals))):
                return True
    return False
