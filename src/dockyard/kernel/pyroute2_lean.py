"""pyroute2 without its package's __init__, for the daemon's memory.

`import pyroute2` (any submodule imports the package first) runs an
__init__ that imports every part of the library: IPDB, NDB, conntrack,
ipset, wireguard, nl80211, plan9... 337 modules, some 24 MB of a process
that needs only IPRoute (measured: 17 MB with this). `install()`, called
before any pyroute2 import, puts the package in sys.modules without
running its __init__, so that `from pyroute2.iproute.linux import IPRoute`
loads only what IPRoute needs. Whoever asks the package itself for a name
(`from pyroute2 import NDB`) gets the whole library then, as usual: the
first such lookup runs the real __init__ in place.

pyroute2 runs on asyncio, which imports ssl (6 MB with libssl): asyncio is
loaded without it, and ssl stays a placeholder until one of its names is
used (a registry's or etcd's HTTPS), so that modules that only import it
(pyroute2's probe_msg, http.client) do not load it.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import threading
import types
from typing import Any


class _DeferredSsl(types.ModuleType):
    """Stands for ssl until one of its names is used, then becomes it.

    importlib's LazyLoader would not do: an `import ssl` statement reads the
    module's __spec__, which loads it.
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__spec__ = importlib.machinery.ModuleSpec(name, None)

    def __getattr__(self, name: str) -> Any:
        with _ssl_lock:
            if sys.modules.get("ssl") is self:
                del sys.modules["ssl"]
                real = importlib.import_module("ssl")
                self.__dict__.update(real.__dict__)
        return getattr(sys.modules["ssl"], name)


_ssl_lock = threading.Lock()


def install() -> bool:
    """Make the package lean if nothing imported it yet; whether it is lean now."""
    if "pyroute2" in sys.modules:
        return False
    if "asyncio" not in sys.modules and "ssl" not in sys.modules:
        # pyroute2 runs on asyncio, which imports ssl if it can: 6 MB (libssl,
        # libcrypto) for TLS that netlink never speaks. asyncio is made without
        # it (it allows that); then ssl is loaded by the first use of one of
        # its names (a registry's or etcd's HTTPS), not by the modules that
        # only import it (pyroute2's probe_msg, http.client).
        sys.modules["ssl"] = None  # type: ignore[assignment]
        try:
            importlib.import_module("asyncio")
        finally:
            del sys.modules["ssl"]
        sys.modules["ssl"] = _DeferredSsl("ssl")
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        # Not installed, or not the package (a module in its place): the import that
        # needs it says what is wrong.
        return False
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def __getattr__(name: str) -> Any:  # the module's own (PEP 562)
        if name.startswith("__"):  # the import system's questions (__path__...): no submodule
            raise AttributeError(name)
        # `from pyroute2 import netns` inside the library: a submodule, loaded alone.
        if importlib.util.find_spec(f"pyroute2.{name}") is not None:
            return importlib.import_module(f"pyroute2.{name}")
        package.__dict__.pop("__getattr__", None)
        loader.exec_module(package)
        return getattr(package, name)

    package.__dict__["__getattr__"] = __getattr__
    sys.modules["pyroute2"] = package
    # What the real __init__ does first: the library's logging set up.
    importlib.import_module("pyroute2.config.log")
    return True
