"""Nothing secret leaks: TLS fails closed, tokens and Secret data never reach logs or errors."""

from __future__ import annotations

import base64
import datetime
import logging
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes_asyncio.client import ApiClient, Configuration

from kinformer import InformerFactory, ListWatch, Resource
from kinformer.errors import ConnectionFailedError, UnauthorizedError
from kinformer.testing import FakeApiServer, eventually

TOKEN = "tok-Q2F0Y2hNZUlmWW91Q2Fu"
WRONG = "wrong-SXRzQVNlY3JldA"
PASSWORD = "hunter2-correct-horse"


def _self_signed(tmp: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    return context


async def test_tls_verification_fails_closed_without_the_ca(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    served: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        served.append(request.path)
        return web.json_response({"kind": "ConfigMapList", "metadata": {"resourceVersion": "1"}, "items": []})

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=_self_signed(tmp_path))
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    config = Configuration(host=f"https://localhost:{port}")
    config.api_key = {"BearerToken": TOKEN}
    config.api_key_prefix = {"BearerToken": "Bearer"}
    try:
        async with ApiClient(config) as api:
            with pytest.raises(ConnectionFailedError, match="cannot reach") as info:
                await ListWatch(api, Resource.configmaps).list()
        assert "certificate" in repr(info.value.__cause__).lower()
        assert served == []  # the request (and its token) never went out
        assert TOKEN not in str(info.value) and TOKEN not in caplog.text
        config.ssl_ca_cert = str(tmp_path / "cert.pem")  # with the CA it works: the failure was the trust
        async with ApiClient(config) as api:
            assert await ListWatch(api, Resource.configmaps).list() == ([], "1")
    finally:
        await runner.cleanup()


async def test_tokens_and_secret_data_never_reach_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="kinformer")
    reported: list[BaseException] = []
    encoded = base64.b64encode(PASSWORD.encode()).decode()
    async with FakeApiServer(token=TOKEN, bookmark_interval=0.2) as server:
        server.create("secrets", {"metadata": {"name": "db", "namespace": "default"}, "type": "Opaque",
                                  "data": {"password": encoded}})
        wrong = server.api_client()
        wrong.configuration.api_key = {"BearerToken": WRONG}
        right = server.api_client()
        try:
            async with InformerFactory(wrong, watch_error_handler=lambda r, e: reported.append(e)) as factory:
                denied = factory.informer(Resource.secrets)
                await eventually(lambda: isinstance(denied.last_error, UnauthorizedError))
            async with InformerFactory(right) as factory:
                secrets = factory.informer(Resource.secrets)

                def broken(obj: Any, initial: bool) -> None:
                    raise ValueError("cannot handle this secret")

                secrets.add_event_handler(broken)
                secrets.add_event_handler(lambda obj, initial: None, on_update=None)
                await factory.wait_for_cache_sync(5)
                server.update("secrets", {**server.get("secrets", "db", "default"),
                                          "data": {"password": encoded, "more": encoded}})
                server.malformed_lines(1)
                server.delete("secrets", "db", "default")
                await eventually(lambda: "default/db" not in secrets.indexer)
        finally:
            await wrong.close()
            await right.close()
    text = caplog.text + "".join(repr(e) + str(e) for e in reported)
    assert reported and caplog.records
    for needle in (TOKEN, WRONG, PASSWORD, encoded, "Bearer "):
        assert needle not in text, needle
