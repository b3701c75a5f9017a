"""Auth as a policy over actions (pypiserver's vocabulary: update, download, list)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from app.errors import AuthenticationRequiredError, PermissionDeniedError, TooManyLoginFailuresError


class Action(enum.StrEnum):
    LIST = "list"
    DOWNLOAD = "download"
    UPDATE = "update"  # upload, and (later) yank/delete


def parse_actions(text: str | None) -> frozenset[Action] | None:
    """``"update,download,list"`` -> the set; ``"."`` -> empty; ``None`` -> None (not given)."""
    if text is None:
        return None
    text = text.strip()
    if text in (".", ""):
        return frozenset()
    actions = set()
    for word in text.replace(" ", "").split(","):
        try:
            actions.add(Action(word.lower()))
        except ValueError:
            raise ValueError(
                f"unknown action {word!r} in --authenticate: use update, download, list "
                "(comma-separated), or '.' for none"
            ) from None
    return frozenset(actions)


@dataclass(frozen=True, slots=True)
class Identity:
    username: str


class Authenticator(Protocol):
    async def verify(self, username: str, password: str, client: str | None = None) -> bool: ...


@dataclass(frozen=True, slots=True)
class Policy:
    """Which actions need credentials, and whether anonymous uploads are allowed at all."""

    required: frozenset[Action]
    anonymous_upload: bool
    authenticator: Authenticator | None

    async def authorize(
        self, action: Action, credentials: tuple[str, str] | None, client: str | None = None
    ) -> Identity | None:
        """Return who is acting (None for anonymous). ``client``: the peer's address, by which
        failed logins are counted.

        Raises:
            AuthenticationRequiredError: credentials are needed and missing or wrong (-> 401).
            TooManyLoginFailuresError: too many wrong passwords for this user from this client (-> 429).
            PermissionDeniedError: anonymous uploads are refused by the safe default (-> 403).
        """
        if action not in self.required:
            # Open for this action: flit and twine always send Basic credentials; accept and ignore.
            if action is Action.UPDATE and not self.anonymous_upload:
                raise PermissionDeniedError(
                    "Anonymous uploads are refused because this server listens beyond loopback and has "
                    "no passwords file. Start it with --passwords FILE (an htpasswd file) to require "
                    "logins, or with --authenticate . to let anyone upload."
                )
            if not credentials or not credentials[0]:
                return None
            if action is Action.UPDATE and self.authenticator is not None:
                # A passwords file says who the users are: the name recorded as the uploader and in
                # the journal is one whose password was given. A wrong one uploads anonymously, and
                # so does one whose pair is blocked (nothing to refuse: anyone may upload).
                try:
                    ok = await self.authenticator.verify(*credentials, client)
                except TooManyLoginFailuresError:
                    return None
                return Identity(credentials[0]) if ok else None
            return Identity(credentials[0])
        if credentials is None:
            raise AuthenticationRequiredError(f"This server requires a username and password to {_VERB[action]}.")
        username, password = credentials
        if self.authenticator is not None and await self.authenticator.verify(username, password, client):
            return Identity(username)
        raise AuthenticationRequiredError(
            f"Invalid username or password for {username!r}: check the credentials in your "
            "~/.pypirc, pip.conf or keyring."
        )


_VERB = {Action.LIST: "list projects", Action.DOWNLOAD: "download files", Action.UPDATE: "upload, yank or delete files"}
