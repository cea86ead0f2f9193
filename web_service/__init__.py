"""The web front end: GOV.UK pages for coordinators, professionals and IG officers.

A separate process that holds no key and no extra power: it calls the linkage
service and the audit log with the signed-in user's own token and relays the
professional's browser-signed requests to the unlock service; releases are
opened in the browser. See ``docs/web-service.md``.
"""

from ._accounts import NewAccount, SignedIn, create_account, reset_account, sign_in
from ._app import create_app
from ._config import Settings, load_settings
from ._errors import (
    AccountError,
    BackendError,
    ConfigError,
    SignInError,
    StorageError,
    WebError,
)

__all__ = [
    "AccountError",
    "BackendError",
    "ConfigError",
    "NewAccount",
    "Settings",
    "SignInError",
    "SignedIn",
    "StorageError",
    "WebError",
    "create_account",
    "create_app",
    "load_settings",
    "reset_account",
    "sign_in",
]
