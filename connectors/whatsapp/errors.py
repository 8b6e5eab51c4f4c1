"""What a WhatsApp provider answered, as exceptions; one classifier for Meta and Twilio codes.

WhatsUpError (base.exceptions)     ``retriable`` alone decides retry versus dead-letter
└── SendError                         a provider refused or failed a send; carries code, HTTP status, title
    ├── RateLimited                   130429, 131056, 80007, HTTP 429, Twilio 20429: back off (retriable)
    ├── TransientSendError            131000, 1, 2, 5xx, timeouts, refused connections (retriable)
    ├── WindowClosed                  131047 / Twilio 63016: the 24 h window is closed; send the template
    └── PermanentSendError            131026, 131051, 100, 132xxx, bad numbers: dead-letter with the code
"""

from __future__ import annotations

from base.exceptions import WhatsUpError

# Meta Cloud API codes (developers.facebook.com, WhatsApp "Error codes").
META_RATE_LIMIT = frozenset({4, 80007, 130429, 131056})
META_TRANSIENT = frozenset({1, 2, 131000, 131016, 133004})
META_WINDOW_CLOSED = frozenset({131047})
# An expired or wrong token is not the message's fault: retrying (and the breaker) keeps it, unlike a
# dead-letter that would drop every message while the token is being rotated.
META_AUTH = frozenset({0, 190})
# Twilio REST and WhatsApp codes (twilio.com/docs/api/errors).
TWILIO_RATE_LIMIT = frozenset({20429, 63018})
TWILIO_TRANSIENT = frozenset({20500, 20503, 63012})
TWILIO_WINDOW_CLOSED = frozenset({63016})
TWILIO_AUTH = frozenset({20003})


class SendError(WhatsUpError):
    """A provider did not take a message; ``code`` is the provider's error code when it gave one."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        http_status: int | None = None,
        title: str | None = None,
        provider: str = "meta",
        retry_after_s: float | None = None,
        maybe_sent: bool = False,
    ) -> None:
        super().__init__(message)
        # True when the request may have reached the provider (a read timeout): confirm before resending.
        self.maybe_sent = maybe_sent
        self.code = code
        self.http_status = http_status
        self.title = title or message
        self.provider = provider
        self.retry_after_s = retry_after_s

    @property
    def label(self) -> str:
        """Return a low-cardinality label for metrics: the code, else the HTTP status, else the class."""
        if self.code is not None:
            return str(self.code)
        if self.http_status is not None:
            return f"http_{self.http_status}"
        return type(self).__name__


class RateLimited(SendError):
    """The provider's throughput or per-recipient limit was hit."""

    retriable = True


class TransientSendError(SendError):
    """The provider or the network failed briefly."""

    retriable = True


class WindowClosed(SendError):
    """Free-form messages need an open 24-hour customer service window; a template does not."""


class PermanentSendError(SendError):
    """The message can never be sent as it is."""


def classify(
    provider: str, http_status: int | None, code: int | None, title: str | None = None
) -> type[SendError]:
    """Return the exception class for a provider's answer (HTTP status and error code)."""
    if provider == "twilio":
        rate, transient, window, auth = TWILIO_RATE_LIMIT, TWILIO_TRANSIENT, TWILIO_WINDOW_CLOSED, TWILIO_AUTH
    else:
        rate, transient, window, auth = META_RATE_LIMIT, META_TRANSIENT, META_WINDOW_CLOSED, META_AUTH
    if code in rate or http_status == 429:
        return RateLimited
    if code in window:
        return WindowClosed
    if code in transient or code in auth or http_status in (401, 403, 408) or (http_status or 0) >= 500:
        return TransientSendError
    if http_status is None:  # no answer at all: a timeout or a refused connection
        return TransientSendError
    return PermanentSendError


def make_error(
    provider: str,
    http_status: int | None,
    code: int | None,
    title: str | None,
    retry_after_s: float | None = None,
) -> SendError:
    """Build the classified exception for a provider's answer."""
    cls = classify(provider, http_status, code, title)
    shown = f"{provider} answered {http_status or 'nothing'}" + (f", code {code}" if code is not None else "")
    return cls(
        f"{shown}: {title or 'no detail'}",
        code=code,
        http_status=http_status,
        title=title,
        provider=provider,
        retry_after_s=retry_after_s,
    )
