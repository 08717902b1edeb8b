"""A fleet of test hosts on this machine: one network namespace per host, joined to this one
by a veth link, each running its own sshd (Debian's openssh-server, started here, not as a
system service) in its own mount namespace with its own bind-mounted /etc and its own
/opt/facefleet, /var/lib/facefleet, /run/facefleet and /var/log/facefleet. Ansible reaches
them over real SSH. FAKE Jetson parts (release file, device-tree model, nvpmodel) are laid
into a host's own /etc and /usr/local/bin."""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SUBNET = "10.231.7"  # this machine's own test hosts, inside namespaces the test makes and removes
PRIVATE = ("/opt/facefleet", "/var/lib/facefleet", "/run/facefleet", "/var/log/facefleet")


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


@dataclass
class Host:
    name: str
    index: int
    root: Path  # this host's own files
    etc_files: dict[str, str] = field(default_factory=dict)  # path under /etc -> content
    bin_files: dict[str, str] = field(default_factory=dict)  # FAKE tools for /usr/local/bin

    @property
    def netns(self) -> str:
        return f"ff-{self.name}"

    @property
    def address(self) -> str:
        return f"{SUBNET}.{4 * self.index + 2}"

    @property
    def gateway(self) -> str:
        return f"{SUBNET}.{4 * self.index + 1}"


class Fleet:
    def __init__(self, folder: Path, hosts: list[Host]) -> None:
        self.folder, self.hosts = folder, hosts
        self.key = folder / "id_ed25519"

    def __enter__(self) -> Fleet:
        try:
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key))
            Path("/run/sshd").mkdir(exist_ok=True)
            for path in PRIVATE:
                Path(path).mkdir(parents=True, exist_ok=True)
            for host in self.hosts:
                self._network(host)
                self._files(host)
                self._sshd(host)
            for host in self.hosts:
                self._wait_ssh(host)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _network(self, host: Host) -> None:
        outside = f"ffv{host.index}"
        sh("ip", "netns", "del", host.netns, check=False)
        sh("ip", "link", "del", outside, check=False)
        sh("ip", "netns", "add", host.netns)
        sh("ip", "link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
        sh("ip", "addr", "add", f"{host.gateway}/30", "dev", outside)
        sh("ip", "link", "set", outside, "up")
        for argv in (
            ("ip", "addr", "add", f"{host.address}/30", "dev", "eth0"),
            ("ip", "link", "set", "eth0", "up"),
            ("ip", "link", "set", "lo", "up"),
        ):
            sh("ip", "netns", "exec", host.netns, *argv)

    def _files(self, host: Host) -> None:
        etc = host.root / "etc"
        if not etc.exists():
            shutil.copytree(
                "/etc",
                etc,
                symlinks=True,
                ignore_dangling_symlinks=True,
                ignore=shutil.ignore_patterns("facefleet", "netns"),
            )
        for relative, content in host.etc_files.items():
            (etc / relative).parent.mkdir(parents=True, exist_ok=True)
            (etc / relative).write_text(content)
        (host.root / "bin").mkdir(exist_ok=True)
        for name, content in host.bin_files.items():
            (host.root / "bin" / name).write_text(content)
            (host.root / "bin" / name).chmod(0o755)
        for path in PRIVATE:
            (host.root / path.strip("/").replace("/", "_")).mkdir(exist_ok=True)
        ssh = host.root / "ssh"
        ssh.mkdir(exist_ok=True)
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh / "host_key"))
        shutil.copy(f"{self.key}.pub", ssh / "authorized_keys")
        (ssh / "sshd_config").write_text(
            f"ListenAddress {host.address}\nPort 22\nHostKey {ssh / 'host_key'}\nPidFile {ssh / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {ssh / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "Subsystem sftp internal-sftp\n"
        )

    def _sshd(self, host: Host) -> None:
        mounts = [f"mount --bind {host.root / 'etc'} /etc"]
        mounts += [f"mount --bind {host.root / p.strip('/').replace('/', '_')} {p}" for p in PRIVATE]
        if host.bin_files:
            mounts.append(f"mount --bind {host.root / 'bin'} /usr/local/bin")
        script = " && ".join([*mounts, f"exec /usr/sbin/sshd -D -e -f {host.root / 'ssh' / 'sshd_config'}"])
        log = open(host.root / "sshd.log", "wb")  # noqa: SIM115 - kept open for the daemon's life
        subprocess.Popen(
            ["ip", "netns", "exec", host.netns, "unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _wait_ssh(self, host: Host, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            probe = sh("ssh", *self.ssh_options(), f"root@{host.address}", "true", check=False)
            if probe.returncode == 0:
                return
            time.sleep(0.3)
        raise TimeoutError(f"sshd of {host.name} not answering: {(host.root / 'sshd.log').read_text()[-2000:]}")

    def ssh_options(self) -> list[str]:
        return [
            "-i",
            str(self.key),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "LogLevel=ERROR",
        ]

    def __exit__(self, *exc: object) -> None:
        for host in self.hosts:
            pids = sh("ip", "netns", "pids", host.netns, check=False).stdout.split()
            if pids:
                sh("kill", "-9", *pids, check=False)
            sh("ip", "netns", "del", host.netns, check=False)
            sh("ip", "link", "del", f"ffv{host.index}", check=False)
