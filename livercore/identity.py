"""Who is learning: one identity per person, from the first source configured of

1. **OpenID Connect** through Streamlit's own login (``st.login``, the hospital's provider, set
   up in ``.streamlit/secrets.toml`` ``[auth]``, docs/deploy.md): the provider's e-mail or
   subject claim;
2. **a trusted reverse-proxy header** (``LIVERCORE_TRUSTED_USER_HEADER``, e.g.
   ``X-Forwarded-User`` from oauth2-proxy), honoured only when that variable names it: without
   it, any browser could send the header and be anyone;
3. **demo mode** (nothing configured): the display name a learner types, stated as such on the
   page: anyone who types the same name shares its history.

Roles: ``educator`` for the identities listed in ``LIVERCORE_EDUCATORS`` (comma-separated, as
the source gives them: e-mail, proxy user name, or demo name), everyone else ``resident``.
Pure logic: the app passes in what Streamlit knows (livercore.app.state.current_learner).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

HEADER_VARIABLE = "LIVERCORE_TRUSTED_USER_HEADER"
EDUCATORS_VARIABLE = "LIVERCORE_EDUCATORS"
NAME_LENGTH = 80
IDENTITY_LENGTH = 180
SOURCE_WORDS = {
    "oidc": "signed in with the hospital's login",
    "proxy": "identified by the hospital's proxy",
    "demo": "demo mode: no sign-in, anyone typing this name shares its history",
}


@dataclass(frozen=True)
class Identity:
    """One learner as the app knows them: `subject` is what the store keys them by."""

    source: str  # "oidc", "proxy" or "demo"
    identity: str  # the e-mail or subject, the header's value, or the typed name
    display_name: str
    role: str  # "resident" or "educator"

    @property
    def subject(self) -> str:
        return f"{self.source}:{self.identity}"

    @property
    def is_educator(self) -> bool:
        return self.role == "educator"

    @property
    def how(self) -> str:
        """How the learner was identified, in words (shown beside their name)."""
        return SOURCE_WORDS[self.source]


def _clean(value: str, limit: int) -> str:
    """A header value or typed name as one line of printable text, at most `limit` characters."""
    text = re.sub(r"[\x00-\x1f\x7f]+", " ", str(value)).strip()
    return re.sub(r"\s+", " ", text)[:limit]


def educators(environ: Mapping[str, str] | None = None) -> frozenset[str]:
    env = os.environ if environ is None else environ
    return frozenset(e.strip().lower() for e in env.get(EDUCATORS_VARIABLE, "").split(",") if e.strip())


def trusted_header(environ: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    return env.get(HEADER_VARIABLE, "").strip() or None


def resolve(
    *,
    user: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    demo_name: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Identity | None:
    """The learner from what the app knows: `user`, the OIDC claims of a logged-in user
    (``st.user``; None when login is not configured or nobody is logged in), the request
    `headers` (``st.context.headers``), and the `demo_name` typed in demo mode. None when no
    configured source identifies anyone (the page asks for a name, or to log in)."""
    roles = educators(environ)

    def make(source: str, identity: str, name: str) -> Identity:
        role = "educator" if identity.lower() in roles or name.lower() in roles else "resident"
        return Identity(source, identity, name or identity, role)

    if user and user.get("is_logged_in"):
        identity = _clean(str(user.get("email") or user.get("sub") or ""), IDENTITY_LENGTH)
        if identity:
            return make("oidc", identity, _clean(str(user.get("name") or identity), NAME_LENGTH))
    header = trusted_header(environ)
    if header is not None:
        value = next((v for k, v in (headers or {}).items() if k.lower() == header.lower()), "")
        identity = _clean(value, IDENTITY_LENGTH)
        return make("proxy", identity, _clean(identity, NAME_LENGTH)) if identity else None
    name = _clean(demo_name or "", NAME_LENGTH)
    return make("demo", name, name) if name else None


def demo_mode(*, login_configured: bool, environ: Mapping[str, str] | None = None) -> bool:
    """Whether learners name themselves (neither login nor a trusted header is configured)."""
    return not login_configured and trusted_header(environ) is None
