"""Start etcd and kube-apiserver on loopback, envtest-style, and stop them.

- etcd: one member, data in a temp dir, `--unsafe-no-fsync` (a test cluster).
- kube-apiserver: serving certs it generates itself in `--cert-dir`, a token file with an
  admin token in `system:masters`, a fresh service-account key, RBAC, and
  `--disable-admission-plugins=ServiceAccount` (no controller-manager creates service
  accounts here). Configmaps have no watch cache (`--watch-cache-sizes=configmaps#0`), so
  their watches go to etcd and an etcd compaction produces a real 410; other resources
  keep the watch cache (needed for streaming lists).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ADMIN_TOKEN = "kinformer-e2e-admin-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _service_account_key(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))


@dataclass
class Endpoints:
    server: str
    token: str
    kubeconfig: str
    etcd: str | None  # None for an external cluster


class ControlPlane:
    def __init__(self, bin_dir: str) -> None:
        self.bin_dir = Path(bin_dir)
        self.work = Path(tempfile.mkdtemp(prefix="kinformer-e2e-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = self.work / f"{name}.log"
        self.logs.append(log)
        proc = subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=self.work)
        self.procs.append(proc)
        return proc

    def _wait(self, what: str, check: Callable[[], bool], proc: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode}; log:\n{self.tail(what)}")
            try:
                if check():
                    return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{what} not ready after {timeout} s; log:\n{self.tail(what)}")

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.work / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def start(self) -> Endpoints:
        etcd_port, peer_port, api_port = _free_port(), _free_port(), _free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        etcd = self._spawn("etcd", [
            str(self.bin_dir / "etcd"), "--data-dir", str(self.work / "etcd"),
            "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-cluster", f"default=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync", "--log-level", "warn",
        ])

        def etcd_healthy() -> bool:
            with urllib.request.urlopen(f"{etcd_url}/health", timeout=2) as resp:
                return bool(json.loads(resp.read()).get("health") == "true")

        self._wait("etcd", etcd_healthy, etcd, 60)

        certs = self.work / "certs"
        certs.mkdir()
        tokens = self.work / "tokens.csv"
        tokens.write_text(f'{ADMIN_TOKEN},admin,admin-uid,"system:masters"\n')
        sa_key = self.work / "sa.key"
        _service_account_key(sa_key)
        server = f"https://127.0.0.1:{api_port}"
        api = self._spawn("kube-apiserver", [
            str(self.bin_dir / "kube-apiserver"),
            "--etcd-servers", etcd_url,
            "--advertise-address", "127.0.0.1", "--bind-address", "127.0.0.1", "--secure-port", str(api_port),
            "--cert-dir", str(certs), "--token-auth-file", str(tokens), "--authorization-mode", "RBAC",
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", str(sa_key), "--service-account-signing-key-file", str(sa_key),
            "--service-cluster-ip-range", "10.0.0.0/24", "--allow-privileged=true",
            "--disable-admission-plugins", "ServiceAccount",
            "--watch-cache-sizes", "configmaps#0",
            "--v", "1",
        ])
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE

        def ready() -> bool:
            req = urllib.request.Request(f"{server}/readyz", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            with urllib.request.urlopen(req, timeout=5, context=context) as resp:
                return resp.status == 200

        self._wait("kube-apiserver", ready, api, 180)
        kubeconfig = self.work / "kubeconfig"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "e2e",
            "clusters": [{"name": "e2e", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
            "users": [{"name": "admin", "user": {"token": ADMIN_TOKEN}}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "admin"}}],
        }))
        return Endpoints(server, ADMIN_TOKEN, str(kubeconfig), etcd_url)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if os.environ.get("KINFORMER_E2E_KEEP") != "1":
            shutil.rmtree(self.work, ignore_errors=True)
