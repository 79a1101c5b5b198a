"""A PostgreSQL client program whose stdout is a stream to read (``pg_dump``, ``pg_basebackup``).

It starts with the target's libpq session: the password in its environment and the settings
without an environment variable in a service file, never in its argv. The session lives until the
caller closes the returned stack, after the program exits. The pipe is widened to :data:`CHUNK`,
so each read takes a whole buffer.
"""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
from collections.abc import Mapping

from stellar_ops.postgres.target import PgTarget

CHUNK = 1 << 20  # 1 MiB
F_SETPIPE_SZ = 1031  # fcntl's F_SETPIPE_SZ on Linux


def start_streaming(
    argv: list[str], target: PgTarget, *, env_changes: Mapping[str, str | None] | None = None
) -> tuple[subprocess.Popen[bytes], contextlib.ExitStack]:
    """The running program (stdout and stderr piped, unbuffered) and the stack that holds its
    libpq session open; ``env_changes`` sets (or, with None, removes) environment variables."""
    session = contextlib.ExitStack()
    try:
        env = session.enter_context(target.client_session())
        for name, value in (env_changes or {}).items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
            bufsize=0,
        )
    except BaseException:
        session.close()
        raise
    assert process.stdout is not None
    with contextlib.suppress(OSError):  # a smaller pipe only costs a few more reads
        fcntl.fcntl(process.stdout.fileno(), F_SETPIPE_SZ, CHUNK)
    return process, session
