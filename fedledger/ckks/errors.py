"""The three ways CKKS input is refused, shared by every module of the package."""

from __future__ import annotations


class CiphertextError(ValueError):
    """A ciphertext (or a list of them) is malformed, oversized or not for this study."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class SecurityError(ValueError):
    """Parameters outside the 128-bit HomomorphicEncryption.org bound."""


class KeyHandlingError(ValueError):
    """A context holds (or lacks) a key it must not (or must) hold."""
