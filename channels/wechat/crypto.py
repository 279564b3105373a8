"""Signatures and message encryption for WeChat pushes (PROTOCOLS.md A.1, A.2).

The cipher itself is wechatpy's ``WeChatCrypto``; we add what it lacks: the plain signature
check with a constant-time compare, key rotation (current, then previous EncodingAESKey) and
telling a wrong AppID apart from a wrong key, for a clear rejection reason.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from wechatpy.crypto import PrpCrypto, WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException


def signature(*parts: str) -> str:
    """sha1 of the sorted parts joined: the URL ``signature`` (token, timestamp, nonce) and the
    ``msg_signature`` (token, timestamp, nonce, Encrypt)."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def signature_ok(expected_parts: tuple[str, ...], given: str) -> bool:
    return hmac.compare_digest(signature(*expected_parts), given.lower())


class DecryptFailed(Exception):
    """No configured key decrypts the message for this AppID; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Keyring:
    """The account's current and previous keys, ready to decrypt and encrypt."""

    ciphers: tuple[WeChatCrypto, ...]

    @classmethod
    def build(cls, token: str, appid: str, *aes_keys: str) -> Keyring:
        return cls(tuple(WeChatCrypto(token, k, appid) for k in aes_keys if k))

    def decrypt(self, encrypt: str) -> tuple[str, WeChatCrypto]:
        """The plaintext XML and the cipher that opened it. The caller has already checked
        ``msg_signature``, so ``decrypt_message`` is given the signature it computes itself."""
        wrong_appid = False
        for cipher in self.ciphers:
            try:
                plain = cipher.decrypt_message({"Encrypt": encrypt}, _sig(cipher.token, encrypt), "0", "0")
            except InvalidAppIdException:
                # With the right key but another AppID the payload is still well formed XML; with
                # the wrong key it is noise. wechatpy raises the same exception for both.
                wrong_appid = wrong_appid or _opens_as_xml(cipher, encrypt)
                continue
            except (ValueError, UnicodeDecodeError, TypeError, IndexError):
                continue
            return plain, cipher
        if not self.ciphers:
            raise DecryptFailed("encrypted push but no EncodingAESKey is configured")
        raise DecryptFailed("AppID inside the ciphertext does not match" if wrong_appid else "cannot decrypt")


def _sig(token: str, encrypt: str) -> str:
    return signature(token, "0", "0", encrypt)


def _opens_as_xml(cipher: WeChatCrypto, encrypt: str) -> bool:
    try:
        plain = PrpCrypto(cipher.key).cipher.decrypt(base64.b64decode(encrypt))
    except ValueError:
        return False
    return b"<xml>" in plain[:64]


def encrypt_reply(cipher: WeChatCrypto, xml: str, nonce: str, timestamp: str) -> str:
    return str(cipher.encrypt_message(xml, nonce, timestamp))
