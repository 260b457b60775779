"""What bench/run and bench/fleet share: tools, ports, HTTP, the machine's description, and a
redis-server they start (plain, or with a TLS port; pinned to a CPU; restartable on the same
ports) and read INFO from over one long-lived connection."""

import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def ensure_tools():
    missing = [pkg for tool, pkg in [("wrk", "wrk"), ("redis-server", "redis-server"), ("redis-cli", "redis-tools")]
               if shutil.which(tool) is None]
    if missing:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        log("installing", *missing)
        subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True)
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                       check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_ready(port, limit=10.0):
    deadline = time.monotonic() + limit
    while http_get(port, "/readyz")[0] != 200:
        if time.monotonic() > deadline:
            raise RuntimeError(f"port {port} is not ready after {limit}s")
        time.sleep(0.05)


def wait_listening(port, limit=10.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.001)
    raise RuntimeError(f"nothing listens on port {port} after {limit}s")


def http_get(port, path):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


class RedisServer:
    """redis-server on free loopback ports, its files in `tmp`. With `tls_dir` (holding server.pem,
    server.key and ca.pem) it also serves TLS on `tls_port`; with `cpu` it runs pinned there.
    INFO goes over one long-lived connection, so reading it makes no new connection."""

    def __init__(self, tmp, tls_dir=None, cpu=None):
        self.tmp, self.tls_dir, self.cpu = tmp, tls_dir, cpu
        self.port = free_port()
        self.tls_port = free_port() if tls_dir else None
        self.proc = None
        self.conn = None
        self.info_calls = 0
        self.start()

    def start(self):
        """Starts (again, on the same ports) and waits until it accepts connections."""
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                "no", "--dir", self.tmp, "--logfile", os.path.join(self.tmp, "redis.log")]
        if self.tls_dir:
            cert = lambda name: os.path.join(self.tls_dir, name)  # noqa: E731
            args += ["--tls-port", str(self.tls_port), "--tls-cert-file", cert("server.pem"), "--tls-key-file",
                     cert("server.key"), "--tls-ca-cert-file", cert("ca.pem"), "--tls-auth-clients", "no"]
        pin = (lambda: os.sched_setaffinity(0, {self.cpu})) if self.cpu is not None else None
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pin)
        wait_listening(self.port)

    def info(self):
        if self.conn is None:
            self.conn = socket.create_connection(("127.0.0.1", self.port))
        self.conn.sendall(b"INFO all\r\n")
        data = b""
        while True:
            data += self.conn.recv(65536)
            header, _, rest = data.partition(b"\r\n")
            if header.startswith(b"$") and len(rest) >= int(header[1:]) + 2:
                break
        self.info_calls += 1
        fields = {}
        for line in rest.decode().splitlines():
            if ":" in line and not line.startswith("#"):
                key, value = line.split(":", 1)
                fields[key] = value
        return fields

    def counters(self):
        info = self.info()
        ping = re.search(r"calls=(\d+)", info.get("cmdstat_ping", "calls=0")).group(1)
        # cmdstat_info counts this INFO too (once it has run): the daemon's own INFOs are the rest.
        infos = int(re.search(r"calls=(\d+)", info.get("cmdstat_info", "calls=0")).group(1))
        return {
            "daemon_infos": infos - (self.info_calls - 1),
            "commands": int(info["total_commands_processed"]),
            "connections": int(info["total_connections_received"]),
            "clients": int(info["connected_clients"]),
            "pings": int(ping),
            "info_calls": self.info_calls,
        }

    def kill(self):
        """SIGKILL and reap (the INFO connection goes with it)."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()

    stop = kill


def proc_status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])  # kB
    raise KeyError(field)


def cpu_ns(pid):
    """CPU time of every thread of the process, nanoseconds (from schedstat)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/schedstat") as f:
            total += int(f.read().split()[0])
    return total


def thread_cpu_ns(pid):
    """CPU time of each live thread of the process, nanoseconds (from schedstat), by thread id."""
    times = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                times[task] = int(f.read().split()[0])
        except FileNotFoundError:
            pass  # exited since the listing
    return times


def cpu_ns_over(pids, seconds, every=0.2):
    """CPU time the processes use over the next `seconds`, nanoseconds, and the span measured.
    Threads are sampled every `every` s, so a thread that exits meanwhile (a blocking-pool
    thread ends after 10 s idle) counts up to its last sample instead of taking its whole
    lifetime's time off the sum. (`/proc/<pid>/stat`'s utime and stime will not do: they are
    tick samples, and a daemon that runs well under a tick per second shows 0 there.)"""
    sample = lambda: {(pid, task): ns for pid in pids for task, ns in thread_cpu_ns(pid).items()}  # noqa: E731
    first = sample()
    last = dict(first)
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        time.sleep(min(every, max(0.0, seconds - (time.monotonic() - start))))
        last.update(sample())
    span = time.monotonic() - start
    return sum(ns - first.get(key, 0) for key, ns in last.items()), span


def machine():
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return f"{os.cpu_count()} × {model}, {mem_kb / 1048576:.0f} GiB RAM, Linux {platform.release()}"


def make_certs(tmp):
    """A throwaway CA and a server certificate for 127.0.0.1 in `tmp`: ca.pem, server.pem, server.key."""
    script = """
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=fleet-ca
        printf 'subjectAltName=IP:127.0.0.1\\n' > server.ext
        openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=redis
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext
    """
    subprocess.run(["sh", "-ec", script], cwd=tmp, check=True, capture_output=True)
