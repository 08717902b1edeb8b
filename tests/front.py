"""A real nginx front in front of a real `facefleet serve`, the way roles/facefleet_front runs it.

`render()` fills the role's own template (roles/facefleet_front/templates/front.conf.j2) with plain Jinja2,
so tests and bench/attack.py run the very file the role installs. `make_pki()` makes a throwaway CA and a
host certificate for 127.0.0.1/localhost with the `cryptography` package. `Front` starts
`nginx -c <dir>/front.conf -g 'daemon off;'` on free loopback ports, with its pid, temporary folders and logs
in that folder: nothing under /etc/nginx, /var/lib/nginx or /var/log/nginx.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import pwd
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.server import Process, free_port

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "roles" / "facefleet_front" / "templates" / "front.conf.j2"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
# `-e` (the log used before the configuration is read) exists from nginx 1.19.5; JetPack 6's 1.18 lacks it.
EARLY_LOG_SINCE = (1, 19, 5)


def nginx_version(nginx: str = NGINX) -> tuple[int, ...]:
    """nginx's version, from `nginx -v` (which writes to stderr)."""
    out = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=True).stderr
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out)
    if not match:
        raise RuntimeError(f"cannot read the nginx version from {out!r}")
    return tuple(int(part) for part in match.groups())


def nginx_argv(folder: Path, nginx: str = NGINX) -> list[str]:
    """The command line the role runs: its own prefix and config, in the foreground, early log in `folder`
    where this nginx can be told (the compiled-in one is opened before the config is read)."""
    argv = [nginx, "-p", f"{folder}/", "-c", str(folder / "front.conf")]
    if nginx_version(nginx) >= EARLY_LOG_SINCE:
        argv += ["-e", str(folder / "front-startup.log")]
    return [*argv, "-g", "daemon off;"]


def front_vars(folder: Path, **overrides: Any) -> dict[str, Any]:
    """The role's variables for a front living in `folder` (role defaults, but short timeouts for tests)."""
    values: dict[str, Any] = {
        "facefleet_front_managed": "rendered by tests/front.py",
        "facefleet_front_name": "front",
        # workers as this user: they must reach the temporary folders under pytest's 0700 tmp (the role's
        # www-data reaches the role's 0755 state folder); ignored by nginx when not started as root
        "facefleet_front_user": pwd.getpwuid(os.geteuid()).pw_name,
        "facefleet_front_worker_processes": 1,
        "facefleet_front_worker_connections": 4096,
        "facefleet_front_config_dir": str(folder),
        "facefleet_front_state_dir": str(folder / "state"),
        "facefleet_front_log_dir": str(folder),
        "facefleet_front_header_timeout_s": 10,
        "facefleet_front_body_timeout_s": 10,
        "facefleet_front_send_timeout_s": 30,
        "facefleet_front_keepalive_timeout_s": 15,
        "facefleet_front_max_body_mb": 64.0,
        "facefleet_front_read_timeout_s": 120,
        "facefleet_front_livez_timeout_s": 5,
        "facefleet_front_per_client": 16,
        "facefleet_front_exempt": ["127.0.0.1", "::1"],
        "facefleet_front_listen_hosts": ["127.0.0.1"],
        "facefleet_front_port": 0,
        "facefleet_front_loopback_port": 0,
        "facefleet_front_backend_host": "127.0.0.1",
        "facefleet_front_backend_port": 0,
        "facefleet_front_tls_mode": "own",
        "facefleet_front_tls_cert_path": str(folder / "host.crt"),
        "facefleet_front_tls_key_path": str(folder / "host.key"),
    }
    unknown = set(overrides) - set(values)
    if unknown:
        raise KeyError(f"not a variable of the front's template: {sorted(unknown)}")
    return {**values, **overrides}


def render(values: dict[str, Any]) -> str:
    """The template with plain Jinja2 (no Ansible filters), every variable required, Ansible's whitespace
    options (trim_blocks on)."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True, keep_trailing_newline=True)
    return env.from_string(TEMPLATE.read_text()).render(**values)


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path


def make_pki(
    folder: Path, names: tuple[str, ...] = ("localhost",), addresses: tuple[str, ...] = ("127.0.0.1", "::1")
) -> Pki:
    """A throwaway CA (cryptography, EC P-256) and a host certificate it signed for `names` and `addresses`."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "facefleet test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    host_key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    host = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(host_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(folder / "ca.crt", folder / "host.crt", folder / "host.key")
    pki.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(host.public_bytes(serialization.Encoding.PEM))
    pki.key.write_bytes(
        host_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    pki.key.chmod(0o600)
    return pki


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


class Front(Process):
    """nginx in front of the gunicorn at 127.0.0.1:`backend_port`: TLS on `url`, plain HTTP on `plain_url`.
    The caller stops it."""

    def __init__(self, folder: Path, backend_port: int, **overrides: Any) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.pki = make_pki(folder)
        self.port, self.loopback_port = free_port(), free_port()
        self.values = front_vars(
            folder,
            facefleet_front_port=self.port,
            facefleet_front_loopback_port=self.loopback_port,
            facefleet_front_backend_port=backend_port,
            **overrides,
        )
        (folder / "state").mkdir(exist_ok=True)
        (folder / "front.conf").write_text(render(self.values))
        self.url = f"https://127.0.0.1:{self.port}"
        self.plain_url = f"http://127.0.0.1:{self.loopback_port}"
        self.error_log = folder / "front-error.log"
        self.access_log = folder / "front-access.log"
        checked = subprocess.run([*nginx_argv(folder)[:-2], "-t", "-q"], check=False, capture_output=True, text=True)
        if checked.returncode != 0:
            raise RuntimeError(f"nginx -t refused the rendered front.conf:\n{checked.stderr}")
        super().__init__(nginx_argv(folder), folder / "front.out")
        try:
            self._wait_listening()
        except BaseException:
            self.stop()
            raise

    def _wait_listening(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                for port in (self.port, self.loopback_port):
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"nginx not listening after {timeout} s:\n{self.log.read_text()}")
