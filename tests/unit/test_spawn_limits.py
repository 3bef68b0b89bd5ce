"""kernel/spawn.py: a container's descriptor limit is set once its child has read its files.

The shim forks each container's child while holding a few descriptors per
running container; the child holds them until its exec closes them. With
the container's limit of 1,024 set first, the 254th container found no
descriptor number free to read its /etc/passwd with (EMFILE).
"""

from __future__ import annotations

import os
import resource

import pytest

from dockyard.kernel import spawn

SOFT, HARD = 1024, 524288


@pytest.mark.skipif(
    os.geteuid() != 0, reason="the child becomes its user and drops capabilities as root does"
)
def test_a_child_holding_more_descriptors_than_its_limit_still_becomes_its_user() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: as the shim's would be, with 1,100 descriptors held
        os.close(read)
        status = 1
        try:
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
            held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
            assert max(held) > SOFT
            req = spawn.SpawnRequest(key="c", argv=["true"], env=[], caps=0, user="root", nofile=[SOFT, HARD])
            home = spawn._become_user(req)
            soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # the hard one as the host allows
            os.write(write, f"{home.get('HOME')} {soft}".encode())
            status = 0
        except BaseException as e:
            os.write(write, f"{type(e).__name__}: {e}".encode())
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        said = f.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, said
    assert said == f"/root {SOFT}", said
