"""Where a process's CPU goes, from Linux `perf`: by library, and kernel time by the syscall.

py-spy sees Python frames but charges a syscall or a C library's work to the
Python line that called it, and cannot tell them apart. `perf record -g`
samples the CPU itself (user and kernel, every thread), so each sample can be
charged to the shared library it ran in (the interpreter, libsqlite3, uvloop,
msgspec) or, when it ran in the kernel, to the syscall that entered it: the
first user-space frame of its stack (`write` for frames to sockets, `pwrite`
for SQLite's WAL, `fdatasync` for checkpoints). Kernel samples with no user
frame (interrupts, softirqs run on the way) are "kernel, no syscall"; kernel
time entered from elsewhere than a known wrapper (page faults, mostly) is
charged to the library it came from.

Used by `run.py --profile ... --perf`; needs `perf` (Debian: linux-perf) and
permission to trace the process (root, or kernel.perf_event_paranoid <= 1).
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

# libc's syscall wrappers, by the symbol perf reports, and what kefu does with them
SYSCALLS = {
    "__GI___libc_write": "write()",
    "__libc_write": "write()",
    "write": "write()",
    "__libc_pwrite": "pwrite()",
    "__libc_pwrite64": "pwrite()",
    "__libc_pread": "pread()",
    "__libc_pread64": "pread()",
    "read": "read()",
    "__libc_read": "read()",
    "fdatasync": "fdatasync()",
    "fsync": "fsync()",
    "epoll_pwait": "epoll_wait()",
    "epoll_wait": "epoll_wait()",
    "__fcntl64_nocancel_adjusted": "fcntl() (SQLite locks)",
    "__libc_fcntl64": "fcntl() (SQLite locks)",
}
LIBRARIES = {
    "libpython": "Python interpreter",
    "libsqlite3": "SQLite",
    "_sqlite3": "Python's sqlite3 module",
    "loop.cpython": "uvloop",
    "_core.cpython": "msgspec",
    "libc.so": "libc (malloc, memcpy, ...)",
    "_asyncio": "asyncio (C)",
    "parser.cpython": "httptools",
}


def record(pid: int, seconds: float, out: Path, cpu: str) -> None:
    """Sample `pid` (every thread, with call stacks) for `seconds`, perf itself on `cpu`."""
    cmd = ["taskset", "-c", cpu, "perf", "record", "-F", "999", "-g", "-p", str(pid)]
    cmd += ["-o", str(out), "--", "sleep", str(seconds)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=seconds + 60)


def _library(dso: str) -> str:
    name = dso.rsplit("/", 1)[-1]
    for key, label in LIBRARIES.items():
        if key in name:
            return label
    return name or "?"


def split(data: Path, pid: int) -> tuple[Counter[str], Counter[str], int]:
    """(samples by where they ran, samples by thread, all samples)."""
    script = subprocess.run(
        ["perf", "script", "-i", str(data), "-F", "tid,ip,sym,dso"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    where: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for block in script.split("\n\n"):
        lines = [line.strip() for line in block.strip().splitlines() if line.strip()]
        if len(lines) < 2:
            continue
        total += 1
        main = lines[0].split()[0] == str(pid)
        threads["the event loop's thread" if main else "other threads"] += 1
        frames = [line.split(None, 1)[1] if " " in line else "" for line in lines[1:]]
        in_kernel = "kernel" in frames[0]
        user = next((f for f in frames if "kernel" not in f and "vdso" not in f), None)
        if user is None:
            where["kernel, no syscall"] += 1
            continue
        sym, _, dso = user.partition(" (")
        if in_kernel:
            name = SYSCALLS.get(sym.split("+", 1)[0])
            lib = _library(dso.rstrip(")"))
            where[f"kernel: {name}" if name else f"kernel, from {lib} (faults, other calls)"] += 1
        else:
            where[_library(dso.rstrip(")"))] += 1
    return where, threads, total


def report(
    data: Path, pid: int, us_per_unit: float | None = None, unit: str = "msg", top: int = 18
) -> str:
    """The split as text; with `us_per_unit` (CPU us per `unit`), each share also in us."""
    where, threads, total = split(data, pid)
    if not total:
        return "perf: no samples\n"
    lines = [f"Server CPU by where it ran (perf, {total} samples; kernel time by syscall):"]
    for name, n in where.most_common(top):
        us = f"  {us_per_unit * n / total:6.1f} us/{unit}" if us_per_unit else ""
        lines.append(f"  {100 * n / total:5.1f}%{us}  {name}")
    by_thread = ", ".join(f"{k} {100 * n / total:.0f}%" for k, n in threads.most_common())
    lines.append(f"By thread: {by_thread}")
    return "\n".join(lines) + "\n"
