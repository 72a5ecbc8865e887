"""The sandboxed Jupyter kernel that runs a student's notebook for grading (nbgrader's autograde).

``python -m autograder.harness.kernel -f CONNECTION_FILE --config CONFIG`` (the kernelspec that
``autograder.instructor.course`` installs into a private ``JUPYTER_PATH`` for one student's run
starts it through :data:`BOOTSTRAP`, with ``python -I`` so that nothing in the notebook's folder or
the environment can shadow this module). Before it imports anything of the student's it:

* reads its config (written by the grader: the staged copy of the student's package, a scratch
  folder, the uid to become, the limits) and Jupyter's connection file, while it may still read them;
* sets resource limits, then becomes the grading's private uid, as the code sandbox's call
  processes do (``autograder.harness.worker``): ``uid`` (a plain private uid), ``uid-read`` (a private
  uid keeping only CAP_DAC_READ_SEARCH, when the interpreter is not readable by other users),
  ``nocaps`` (uid 0 without capabilities) or ``same`` (not root: this user);
* points the notebook at the student's package (``PRACTICAL9_ROOT``, ``PRACTICAL9_PACKAGE``: the
  setup cell imports it from there) and sends figures, ``HOME`` and ``TMPDIR`` to the scratch folder;
* confines itself with Landlock: read the interpreter and its site-packages (not this project's),
  the staged package with the public autograder, and the notebook's folder; write only the scratch
  folder; bind only the five TCP ports of the connection file, connect nowhere (ABI >= 4); no signals
  out (ABI >= 6);
* then runs ipykernel in this same process.

So the student's code cannot read the reference solutions, other students' submissions, the
course's gradebook or the grader's private files, and cannot write where nbgrader (as root) writes
the graded notebook afterwards (a link planted there would redirect that write). The grader kills
everything of the uid and removes its files after the run. Standard library only until ipykernel.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import confine, landlock

KERNEL_NAME = "practical9-sandbox"
PORT_KEYS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
PREFIX = "practical9 kernel"
IDENTITIES = ("uid", "uid-read", "nocaps", "same")
KEPT_ENV = ("LANG", "LC_ALL", "JPY_PARENT_PID", "CUDA_VISIBLE_DEVICES", "LD_LIBRARY_PATH")
# python -I: no PYTHONPATH, no user site, no script or current folder on sys.path (the notebook's
# folder holds the student's files). The public autograder is imported from the grader's copy.
BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from autograder.harness.kernel import main; sys.exit(main(sys.argv[2:]))"
)


class KernelSetupError(RuntimeError):
    """The kernel could not be set up as asked (one line; the grader's problem, not the student's)."""


@dataclass
class KernelConfig:
    """What the grader hands the kernel (a JSON file only root may read when grading as root).

    ``src``: folder holding ``autograder/`` (public part) and the staged ``<package>/``;
    ``scratch``: the only writable folder (owned by ``uid``); ``notebook_dir``: the notebook's
    folder (read-only here); ``protect``: folders nothing may be granted inside (the repository,
    the course); ``limits``: ``memory_bytes``, ``file_bytes``, ``max_processes``.
    """

    src: str
    package: str
    scratch: str
    notebook_dir: str
    identity: str = "same"
    uid: int | None = None
    gid: int | None = None
    landlock: bool = True
    protect: list[str] = field(default_factory=list)
    limits: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: str) -> KernelConfig:
        data = _read_json(path, "the kernel config")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        try:
            config = cls(**known)
        except TypeError as exc:
            raise KernelSetupError(f"{path}: not a kernel config ({exc})") from None
        if config.identity not in IDENTITIES:
            raise KernelSetupError(f"{path}: unknown identity {config.identity!r} (one of {', '.join(IDENTITIES)})")
        if config.identity in ("uid", "uid-read") and config.uid is None:
            raise KernelSetupError(f"{path}: identity {config.identity} needs a uid")
        return config

    @property
    def package_dir(self) -> str:
        return os.path.join(self.src, self.package)


def kernel_argv(src: str, config_path: str, python: str | None = None) -> list[str]:
    """The kernelspec's ``argv``: this module, imported from ``src``, in an isolated interpreter."""
    return [
        python or sys.executable,
        "-I",
        "-B",
        "-c",
        BOOTSTRAP,
        src,
        "-f",
        "{connection_file}",
        "--config",
        config_path,
    ]


def kernelspec(src: str, config_path: str, python: str | None = None) -> dict:
    """The ``kernel.json`` of the sandboxed kernel (``KERNEL_NAME``)."""
    return {
        "argv": kernel_argv(src, config_path, python),
        "display_name": "Practical 9 (sandboxed grading)",
        "language": "python",
        "interrupt_mode": "signal",
        "metadata": {"debugger": False},
    }


def install(folder: str, src: str, config: KernelConfig) -> str:
    """Write ``config`` (``folder/kernel-config.json``, 0600) and the kernelspec under
    ``folder/jupyter/kernels/`` (put ``folder/jupyter`` on ``JUPYTER_PATH``); returns the config's path."""
    path = os.path.join(folder, "kernel-config.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(config.__dict__, f)
    spec = os.path.join(folder, "jupyter", "kernels", KERNEL_NAME)
    os.makedirs(spec)
    with open(os.path.join(spec, "kernel.json"), "w", encoding="utf-8") as f:
        json.dump(kernelspec(src, path), f)
    return path


def _read_json(path: str, what: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise KernelSetupError(f"cannot read {what} {path}: {exc}") from None
    if not isinstance(data, dict):
        raise KernelSetupError(f"{what} {path} is not a JSON object")
    return data


def kernel_ports(connection: dict) -> list[int]:
    """The five TCP ports of a Jupyter connection file; refuses the ``ipc`` transport."""
    if connection.get("transport", "tcp") != "tcp":
        raise KernelSetupError(
            f"the sandboxed kernel needs Jupyter's tcp transport, not {connection.get('transport')!r}"
        )
    try:
        ports = [int(connection[key]) for key in PORT_KEYS]
    except (KeyError, TypeError, ValueError):
        raise KernelSetupError("the connection file does not name the kernel's five ports") from None
    if not all(0 < port < 65536 for port in ports):
        raise KernelSetupError(f"the connection file names invalid ports {ports}")
    return ports


def _private_connection_file(connection: dict, config: KernelConfig) -> str:
    """A copy of the connection file in the scratch folder: after the switch of uid the kernel
    can no longer read Jupyter's runtime folder, and ipykernel reads (and rewrites) the file."""
    path = os.path.join(config.scratch, "kernel-connection.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(connection).encode())
        if config.uid is not None and os.geteuid() == 0:
            os.fchown(fd, config.uid, config.gid if config.gid is not None else config.uid)
    finally:
        os.close(fd)
    return path


def _become(config: KernelConfig) -> None:
    """Take on the chosen identity (see the module docstring); nothing to do when not root."""
    if os.geteuid() != 0 or config.identity == "same":
        return
    gid = config.gid if config.gid is not None else config.uid
    if config.identity == "uid":
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(config.uid, config.uid, config.uid)
    elif config.identity == "uid-read":
        from .caps import become_reading_uid

        become_reading_uid(config.uid, gid)
    elif config.identity == "nocaps":
        from .caps import drop_all_capabilities

        drop_all_capabilities()


def _environment(config: KernelConfig) -> None:
    """A clean environment: the notebook's package, HOME, TMPDIR and every cache in the scratch folder."""
    kept = {k: os.environ[k] for k in KEPT_ENV if k in os.environ}
    scratch = config.scratch
    for sub in ("tmp", "figures", ".ipython", ".matplotlib", ".jupyter"):
        os.makedirs(os.path.join(scratch, sub), mode=0o700, exist_ok=True)
    os.environ.clear()
    os.environ.update(kept)
    os.environ.update(
        HOME=scratch,
        TMPDIR=os.path.join(scratch, "tmp"),
        PATH="/usr/bin:/bin",
        LANG=kept.get("LANG", "C.UTF-8"),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONDONTWRITEBYTECODE="1",
        IPYTHONDIR=os.path.join(scratch, ".ipython"),
        MPLCONFIGDIR=os.path.join(scratch, ".matplotlib"),
        JUPYTER_CONFIG_DIR=os.path.join(scratch, ".jupyter"),
        JUPYTER_DATA_DIR=os.path.join(scratch, ".jupyter"),
        JUPYTER_RUNTIME_DIR=os.path.join(scratch, ".jupyter"),
        JUPYTER_CONFIG_PATH="",
        JUPYTER_PATH="",
        JUPYTER_PLATFORM_DIRS="0",
        PRACTICAL9_ROOT=config.package_dir,
        PRACTICAL9_PACKAGE=config.package,
        PRACTICAL9_FIGURES=os.path.join(scratch, "figures"),
    )


def rules_for(config: KernelConfig) -> landlock.Confinement:
    """The Landlock rules of the kernel (call it in the kernel: they name its /proc entry)."""
    rules = confine.default_confinement(
        [config.scratch], [config.src, config.notebook_dir], exclude=[p for p in config.protect if p]
    )
    if config.identity == "uid-read":  # it may read what file permissions hide: /etc only file by file
        from .caps import ETC_FILES

        rules.read_only = [p for p in rules.read_only if p != "/etc" and not p.startswith("/etc/")]
        rules.read_only += [p for p in ETC_FILES if os.path.isfile(p)]
    return rules


def _forget_editable_finders() -> None:
    """An editable install maps ``autograder``/``solutions`` into the repository: never look there."""
    sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
    sys.path_hooks[:] = [h for h in sys.path_hooks if not getattr(h, "__module__", "").startswith("__editable__")]
    sys.path_importer_cache.clear()


def confine_kernel(config: KernelConfig, ports: Sequence[int]) -> str:
    """Limits, identity, environment, Landlock, in that order; returns what is enforced (one line)."""
    limits = config.limits
    failed = confine.set_limits(limits.get("memory_bytes"), limits.get("file_bytes"), limits.get("max_processes"))
    os.umask(0o077)
    _become(config)
    _environment(config)
    if not config.landlock or landlock.landlock_abi() < 1:
        if config.identity == "uid-read":
            raise KernelSetupError("a private uid that keeps the right to read needs Landlock")
        return "no Landlock: files, network and signals are not confined"
    rules = rules_for(config)
    rules.tcp_bind_ports = list(ports)  # ipykernel binds its five ports and connects to nothing
    line = landlock.apply_landlock(rules)
    return line + (f"; limits not set: {', '.join(failed)}" if failed else "")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m autograder.harness.kernel",
        description="The sandboxed kernel that grades a practical 9 notebook.",
    )
    parser.add_argument("-f", dest="connection_file", required=True, help="Jupyter's connection file")
    parser.add_argument("--config", required=True, help="the grader's kernel config (JSON)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Set the kernel up (see the module docstring), then serve the notebook with ipykernel."""
    args = _parser().parse_args(argv)
    try:
        config = KernelConfig.load(args.config)
        connection = _read_json(args.connection_file, "the connection file")
        ports = kernel_ports(connection)
        os.chdir(config.notebook_dir)
        private = _private_connection_file(connection, config)
        what = confine_kernel(config, ports)
    except (KernelSetupError, landlock.ConfinementError, OSError, RuntimeError) as exc:
        print(f"{PREFIX}: cannot set up the sandbox: {exc}", file=sys.stderr, flush=True)
        return 3
    _forget_editable_finders()
    print(f"{PREFIX}: package {config.package_dir}; identity {config.identity}; {what}", file=sys.stderr, flush=True)
    from ipykernel import kernelbase
    from ipykernel.kernelapp import IPKernelApp

    if hasattr(kernelbase, "_get_psutil"):  # its shutdown lists /proc, which Landlock hides: the grader
        kernelbase._get_psutil = lambda: None  # kills the kernel's process group and the uid's processes
    IPKernelApp.launch_instance(argv=["-f", private, "--HistoryManager.hist_file=:memory:"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
