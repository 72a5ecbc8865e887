"""The integrity report (autograder.judge.integrity): hostile snippets are flagged, course code is not.

Each hostile snippet names the (line, category) it must produce; the snippets cover every category
and the ways of hiding a name (aliases, ``from`` imports, getattr, ``__import__``, importlib,
``sys.modules``). The report never imports the code it reads, so these snippets never run.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from autograder.judge.integrity import CATEGORIES, Flag, scan_files, scan_source, summary

ROOT = Path(__file__).resolve().parents[2]

# (source, [(line, category), ...] it must produce). Lines count from 1 after dedent.
HOSTILE: list[tuple[str, list[tuple[int, str]]]] = [
    # frames
    ("import sys\nf = sys._getframe(1)", [(2, "frames")]),
    ("import sys as s\ns._getframe().f_back", [(2, "frames")]),
    ("from sys import _getframe as g\nx = 1\ng(1)", [(1, "frames"), (3, "frames")]),
    ("import sys\ngetattr(sys, '_getframe')(1)", [(2, "frames")]),
    ("x = 1\ngetattr(__import__('sys'), '_get' + 'frame')()", [(2, "frames")]),
    ("import sys\nvars(sys)['_getframe']()", [(2, "frames")]),
    ("import sys\ng = sys._getframe\nh = g\nh(2)", [(2, "frames"), (4, "frames")]),
    ("import inspect\nloc = inspect.currentframe().f_back.f_locals", [(2, "frames")]),
    ("def f(err):\n    return err.__traceback__.tb_frame", [(2, "frames")]),
    ("import sys\nsys.settrace(None)", [(2, "frames")]),
    ("import sys\nsys.monitoring.use_tool_id(0, 'x')", [(2, "frames")]),
    ("import traceback\nframes = list(traceback.walk_stack(None))", [(2, "frames")]),
    ("def gen():\n    yield 1\nprint(gen().gi_frame)", [(3, "frames")]),
    ("x = [__import__('sys')][0]._getframe()", [(1, "frames"), (1, "import_machinery")]),
    # gc
    ("import gc\nobjs = gc.get_objects()", [(2, "gc")]),
    ("x = __import__('gc').get_referrers(1)", [(1, "gc"), (1, "import_machinery")]),
    ("import importlib\nimportlib.import_module('gc').get_objects()", [(2, "gc"), (2, "import_machinery")]),
    ("import gc as g\ng.callbacks.append(print)", [(2, "gc")]),
    ("from gc import get_referents", [(1, "gc")]),
    ("import sys\nsys.modules['gc'].get_objects()", [(2, "gc"), (2, "import_machinery")]),
    # native
    ("import ctypes\nctypes.string_at(0)", [(1, "native")]),
    ("import importlib\nlib = importlib.import_module('ctypes')", [(2, "native")]),
    ("from cffi import FFI", [(1, "native")]),
    ("import mmap", [(1, "native")]),
    ("data = open('/dev/mem', 'rb')", [(1, "native")]),
    ("import torch\ntorch.ops.load_library('evil.so')", [(2, "native")]),
    ("from ctypes import *\nlibc = CDLL(None)", [(1, "native")]),
    # procfs
    ("text = open('/proc/self/maps').read()", [(1, "procfs")]),
    ("import os\nos.listdir(f'/proc/{os.getpid()}/fd')", [(2, "procfs")]),
    ("limit = '/sys/fs/cgroup/memory.max'", [(1, "procfs")]),
    ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)", [(2, "procfs"), (2, "process")]),
    ("import psutil", [(1, "procfs")]),
    # process
    ("import os\nos.kill(1, 9)", [(2, "process")]),
    ("import os\npid = os.fork()", [(2, "process")]),
    ("import subprocess\nsubprocess.run(['ls'])", [(1, "process")]),
    ("import multiprocessing as mp", [(1, "process")]),
    ("import signal\nsignal.signal(signal.SIGTERM, print)", [(1, "process")]),
    ("import sys\nsys.exit(3)", [(2, "process")]),
    ("x = 1\nexit()", [(2, "process")]),
    ("quit(0)", [(1, "process")]),
    ("raise SystemExit(1)", [(1, "process")]),
    ("try:\n    pass\nexcept (SystemExit, KeyboardInterrupt):\n    pass", [(3, "process")]),
    ("import os\nos._exit(4)", [(2, "process")]),
    ("import os as o\no.system('ls')", [(2, "process")]),
    ("from os import execv, setsid", [(1, "process")]),
    ("import pty", [(1, "process")]),
    ("import torch\ntorch.multiprocessing.spawn(print)", [(2, "process")]),
    ("import atexit", [(1, "process")]),
    ("from os import *\nkill(1, 9)", [(2, "process")]),
    # network
    ("import socket", [(1, "network")]),
    ("from urllib.request import urlopen", [(1, "network")]),
    ("import http.client", [(1, "network")]),
    ("import ssl", [(1, "network")]),
    ("import requests", [(1, "network")]),
    ("import torch.distributed as dist", [(1, "network")]),
    # filesystem
    ("open('results.txt', 'w').write('x')", [(1, "filesystem")]),
    ("with open('out', mode='a') as f:\n    pass", [(1, "filesystem")]),
    ("data = open('/tmp/x').read()", [(1, "filesystem")]),
    ("from pathlib import Path\nPath(__file__).parent.joinpath('x').read_text()", [(2, "filesystem")]),
    ("from pathlib import Path\nPath('x').write_text('y')", [(2, "filesystem")]),
    ("from pathlib import Path\nPath('x').open('w')", [(2, "filesystem")]),
    ("import os\nos.remove('x')", [(2, "filesystem")]),
    ("import shutil\nshutil.rmtree('d')", [(2, "filesystem")]),
    ("import os\nos.environ['CUDA_VISIBLE_DEVICES'] = ''", [(2, "filesystem")]),
    ("import os\nos.environ.update(A='1')", [(2, "filesystem")]),
    ("import os\ndel os.environ['A']", [(2, "filesystem")]),
    ("import os\nos.environ |= {'A': '1'}", [(2, "filesystem")]),
    ("import os\nenv = os.environ\nenv['A'] = '1'", [(3, "filesystem")]),
    ("import tempfile", [(1, "filesystem")]),
    ("import os\nos.chdir('..')", [(2, "filesystem")]),
    ("import torch\nprint(torch.__file__)", [(2, "filesystem")]),
    # autograder
    ("import autograder.probes", [(1, "autograder")]),
    ("from autograder import probes", [(1, "autograder")]),
    ("from autograder.impl import Impl", [(1, "autograder")]),
    ("import autograder.schedules\nautograder.probes.x = 1", [(2, "autograder"), (2, "monkeypatch")]),
    ("import solutions", [(1, "autograder")]),
    ("from tests.hostile import HOSTILE", [(1, "autograder")]),
    ("import pytest", [(1, "autograder")]),
    ("import conftest", [(1, "autograder")]),
    ("mod = __import__('autograder.probes')", [(1, "autograder")]),
    ("path = 'results.json'", [(1, "autograder")]),
    ("args = [b'--results-json']", [(1, "autograder")]),
    # import_machinery
    ("import sys\nsys.modules['torch'] = None", [(2, "import_machinery"), (2, "monkeypatch")]),
    ("import sys\nsys.path.insert(0, '.')", [(2, "import_machinery")]),
    ("import sys\nsys.meta_path.append(object())", [(2, "import_machinery")]),
    ("import importlib\nimportlib.reload(importlib)", [(2, "import_machinery")]),
    ("os = __import__('os')", [(1, "import_machinery")]),
    ("exec = exec\nexec('1')", [(2, "import_machinery")]),
    ("for e in [exec]:\n    e('1')", [(1, "import_machinery")]),
    ("exec('x = 1')", [(1, "import_machinery")]),
    ("y = eval('1')", [(1, "import_machinery")]),
    ("code = compile('1', 'f', 'eval')", [(1, "import_machinery")]),
    ("def f():\n    pass\nc = f.__code__", [(3, "import_machinery")]),
    ("def f():\n    pass\nf.__globals__['x'] = 1", [(3, "import_machinery")]),
    ("subs = ().__class__.__base__.__subclasses__()", [(1, "import_machinery")]),
    ("op = __builtins__['open']", [(1, "import_machinery")]),
    ("import builtins", [(1, "import_machinery")]),
    ("x = object()\ninit = x.__class__.__init__", [(2, "import_machinery")]),
    ("import torch\nns = torch.__dict__", [(2, "import_machinery")]),
    ("import types\nm = types.ModuleType('fake')", [(2, "import_machinery")]),
    ("b = print.__self__", [(1, "import_machinery")]),
    ("import importlib\nc = importlib.__import__('ctypes')", [(2, "import_machinery"), (2, "native")]),
    ("def f():\n    from .. import autograder", [(2, "import_machinery")]),
    # monkeypatch
    ("import torch\ntorch.Tensor.backward = print", [(2, "monkeypatch")]),
    ("import torch\ntorch.autograd.backward = print", [(2, "monkeypatch")]),
    ("from torch import nn\nnn.Module.__call__ = print", [(2, "monkeypatch")]),
    ("import torch\nsetattr(torch, 'matmul', print)", [(2, "monkeypatch")]),
    ("import torch\nT = torch.Tensor\nsetattr(T, 'backward', print)", [(3, "monkeypatch")]),
    ("from torch import Tensor as T\nT.add_ = print", [(2, "monkeypatch")]),
    ("import torch\ndel torch.matmul", [(2, "monkeypatch")]),
    ("def f(loss):\n    loss.__class__.backward = print", [(2, "monkeypatch")]),
    ("def f(loss):\n    setattr(type(loss), 'backward', print)", [(2, "monkeypatch")]),
    ("import torch\nobject.__setattr__(torch, 'x', 1)", [(2, "monkeypatch")]),
    (
        "from torch.overrides import TorchFunctionMode\nclass M(TorchFunctionMode):\n    pass",
        [(1, "monkeypatch"), (2, "monkeypatch")],
    ),
    ("import torch\nclass T(torch.Tensor):\n    def __torch_function__(cls, *a):\n        pass", [(3, "monkeypatch")]),
    ("import torch\nclass M(torch.utils._python_dispatch.TorchDispatchMode):\n    pass", [(2, "monkeypatch")]),
    ("import torch\ntorch._C._set_grad_enabled(False)", [(2, "monkeypatch")]),
    ("import torch\nlib = torch.library.Library('x', 'DEF')", [(2, "monkeypatch")]),
    ("import torch.nn.modules.module as m\nm.register_module_forward_hook(print)", [(2, "monkeypatch")]),
    ("import sys\nsys.stdout = None", [(2, "monkeypatch")]),
    ("import torch\ntorch.backends.flags.update(x=1)", [(2, "monkeypatch")]),
    ("def f(g):\n    g.__code__ = None", [(2, "monkeypatch")]),
    ("def f(x, C):\n    setattr(x, '__class__', C)", [(2, "monkeypatch")]),
    ("import time\ntime.perf_counter = lambda: 0.0", [(2, "monkeypatch")]),
    # threads
    ("import threading\nthreading.Thread(target=print).start()", [(1, "threads")]),
    ("from concurrent.futures import ThreadPoolExecutor", [(1, "threads")]),
    ("import asyncio", [(1, "threads")]),
    ("import threading\nthreading.settrace(print)", [(1, "threads"), (2, "frames")]),
    # obfuscation
    ("import base64\nexec(base64.b64decode('eA=='))", [(1, "obfuscation"), (2, "import_machinery")]),
    ("import zlib", [(1, "obfuscation")]),
    ("import marshal", [(1, "obfuscation")]),
    ("import pickle", [(1, "obfuscation")]),
    ("import codecs\nx = codecs.decode('k', 'rot13')", [(1, "obfuscation")]),
    ("payload = bytes.fromhex('00ff')", [(1, "obfuscation")]),
    ("x = 1\ny = '" + "a" * 2001 + "'", [(2, "obfuscation")]),
    ("# -*- coding: utf-7 -*-\nx = 1", [(1, "obfuscation")]),
    ("import torch\nname = input()\nf = getattr(torch, name)", [(3, "obfuscation")]),
    ("import sys\nname = '_getframe'\nf = getattr(sys, name)", [(2, "frames"), (3, "obfuscation")]),
    ("import torch\nstate = torch.load('weights.pt')", [(2, "obfuscation")]),
    # syntax
    ("def broken(:\n    pass", [(1, "syntax")]),
    ("x = 1\ny = 2\x00\n", [(2, "syntax")]),
    ("x = 1\ny = '\ufffd'\n", [(2, "syntax")]),
]

# Code that must raise no flag: everyday torch and the standard library the practical uses.
CLEAN = '''
"""Reads /proc/self and results.json, imports ctypes and autograder.probes: only in this docstring."""
from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
import math
import os
import sys
import typing
import weakref
from dataclasses import dataclass

import torch
import torch.utils.checkpoint
from torch import nn

from autograder.schedule import Action as OldAction
from autograder.schedules import Action, Costs, format_grid, simulate, validate
from autograder.schedules.actions import parse_action
import importlib.util
import autograder.schedules
from .devices import stage_device


@dataclass(frozen=True)
class Item:
    name: str


def step(stages: list[nn.Module], inputs: torch.Tensor, targets: torch.Tensor, loss_fn: nn.Module, m: int) -> float:
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float32)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    total = torch.zeros(())
    outputs: dict[int, torch.Tensor] = collections.defaultdict(lambda: torch.zeros(()))
    for k, (x, y) in enumerate(zip(torch.tensor_split(inputs, m), torch.tensor_split(targets, m))):
        for stage in stages:
            x = torch.utils.checkpoint.checkpoint(stage, x.to(stage_device(stage)), use_reentrant=False)
        loss = loss_fn(x, y) * (x.shape[0] / inputs.shape[0])
        loss.backward()
        grads = torch.autograd.grad(loss, [x], allow_unused=True, retain_graph=False) if False else None
        outputs[k] = loss.detach()
        total += loss.detach()
    with torch.no_grad():
        pass
    print(f"{m} micro-batches/step, {math.ceil(m / 2)} pairs", list(itertools.chain([1], [2])))
    ref = weakref.ref(stages[0])
    cache = functools.lru_cache(maxsize=None)(len)
    if os.environ.get("DEBUG") and sys.version_info >= (3, 9) and importlib.util.find_spec("matplotlib"):
        print(typing.cast(int, 1), dataclasses.fields(Item), ref, cache, Action(0, "F", 0), OldAction, Costs,
              format_grid, simulate, validate, parse_action, autograder.schedules.validate)
    if m < 1:
        raise ValueError(f"m must be >= 1, got {m} (the autograder checks this)")
    map = {}
    map["a"] = 1
    self_class = type(total).__name__
    return total.item()


def compile(x):  # a function of its own called compile is not the builtin
    return x


def exit_code(exit: int = 0) -> int:
    return compile(exit)
'''


def categories_at(source: str) -> set[tuple[int, str]]:
    return {(flag.line, flag.category) for flag in scan_source("sub.py", source)}


@pytest.mark.parametrize("source, expected", HOSTILE, ids=[f"{i}:{exp[0][1]}" for i, (_, exp) in enumerate(HOSTILE)])
def test_hostile_snippet_is_flagged_at_its_line(source, expected):
    found = categories_at(source)
    missing = set(expected) - found
    assert not missing, f"{source!r}: missing {sorted(missing)}; found {sorted(found)}"


def test_every_category_is_explained_and_exercised():
    exercised = {category for _, expected in HOSTILE for _, category in expected}
    assert exercised == set(CATEGORIES)
    assert all(isinstance(text, str) and 20 < len(text) < 200 for text in CATEGORIES.values())


@pytest.mark.parametrize("folder", ["solutions", "assignment"])
def test_reference_and_skeleton_raise_no_flag(folder):
    files = {path.name: path.read_text(encoding="utf-8") for path in sorted((ROOT / folder).glob("*.py"))}
    assert {"partition.py", "microbatch.py", "schedules.py", "per_stage.py"} <= set(files)
    assert scan_files(files) == []


def test_ordinary_code_raises_no_flag():
    assert scan_source("schedules.py", CLEAN) == []


def test_exit_under_main_guard_is_not_flagged_but_the_rest_is():
    source = textwrap.dedent("""\
        import sys
        if __name__ == "__main__":
            sys.exit(main())
            import ctypes
    """)
    assert categories_at(source) == {(4, "native")}


def test_local_name_shadows_a_builtin_only_in_its_scope():
    source = "def f(exec):\n    return exec(1)\nexec('x')\n"
    assert categories_at(source) == {(3, "import_machinery")}
    assert categories_at("def f(e=exec):\n    e('1')\n") == {(1, "import_machinery"), (2, "import_machinery")}


def test_one_flag_per_line_and_category_lists_what_was_found():
    flags = scan_source("a.py", "import sys\nloc = sys._getframe(1).f_back.f_locals\n")
    assert [(f.line, f.category) for f in flags] == [(2, "frames")]
    assert all(word in flags[0].detail for word in ("sys._getframe", "f_back", "f_locals"))


def test_getppid_alone_is_not_flagged():
    assert scan_source("a.py", "import os\nprint(os.getppid())\n") == []


def test_syntax_error_is_exactly_one_flag():
    flags = scan_source("schedules.py", "def naive_step(:\n    pass\n")
    assert [(f.file, f.line, f.category) for f in flags] == [("schedules.py", 1, "syntax")]


def test_undecodable_bytes_are_a_flag_not_an_exception():
    flags = scan_source("a.py", b"x = 1\ny = '\xff'\n")
    assert [(f.line, f.category) for f in flags] == [(2, "syntax")]
    assert scan_source("a.py", b"import ctypes\n")[0].category == "native"
    assert scan_source("a.py", b"\xef\xbb\xbfx = 1\n") == scan_source("a.py", "\ufeffx = 1\n") == []


def test_deep_nesting_is_a_flag_and_the_rest_is_still_scanned():
    flags = scan_source("a.py", "x = 1" + " + 1" * 2000 + "\nimport ctypes\n")
    assert {(f.line, f.category) for f in flags} >= {(1, "obfuscation"), (2, "native")}
    assert scan_source("a.py", "x = " + "(" * 500 + ")" * 500)[0].category == "syntax"


def test_flag_text_and_order():
    flags = scan_files(
        {"schedules.py": "import sys\n\nsys._getframe(1)\n", "partition.py": "import gc\ngc.get_objects()\n"}
    )
    assert [(f.file, f.line) for f in flags] == [("partition.py", 2), ("schedules.py", 3)]
    assert str(flags[1]).startswith("schedules.py:3: frames: sys._getframe")
    assert str(Flag("a.py", 1, "gc", "x")) == "a.py:1: gc: x"


def test_summary_is_one_bounded_line():
    assert summary([]) == "none"
    flags = [
        Flag("schedules.py", 42, "frames", "a"),
        Flag("schedules.py", 50, "gc", "b"),
        Flag("partition.py", 3, "autograder", "c"),
        Flag("schedules.py", 60, "frames", "d"),
    ]
    assert summary(flags) == "4 flags: autograder (partition.py:3), frames (schedules.py:42 +1), gc (schedules.py:50)"
    assert summary(flags[:1]) == "1 flag: frames (schedules.py:42)"
    many = [
        Flag(f"{'very_long_file_name_' * 3}{i}.py", i, category, "x") for i, category in enumerate(list(CATEGORIES) * 5)
    ]
    text = summary(many)
    assert len(text) <= 300 and "\n" not in text and text.startswith(f"{len(many)} flags: ")
    assert text.endswith("...")
    assert len(summary(many, limit=40)) <= 40


def test_scanning_is_fast():
    files = {path.name: path.read_text(encoding="utf-8") for path in (ROOT / "solutions").glob("*.py")}
    start = time.perf_counter()
    scan_files(files)
    assert time.perf_counter() - start < 0.5


def test_hostile_submissions_of_the_grader_tests_are_flagged(tmp_path):
    """The attacks the grader's own tests submit (tests/support/hostile.py) show up in the report,
    but for the two that touch no internals: files grading never reads (a conftest.py beside the
    skeleton) and hostile text in an exception message."""
    from autograder.practical import EDITABLE_FILES
    from tests.support.hostile import HOSTILE
    from tests.support.submissions import build

    seen = set()
    for name, spec in HOSTILE.items():
        dest = build(spec.submission, tmp_path / name, MARKER="/nonexistent", REPO="/nonexistent")
        flags = scan_files({n: (dest / n).read_text(encoding="utf-8") for n in EDITABLE_FILES})
        if name not in ("conftest_and_extras", "nasty_text"):
            assert flags, f"hostile submission {name!r} raised no flag"
        seen |= {flag.category for flag in flags}
    assert {"process", "native", "gc", "monkeypatch", "autograder", "procfs", "filesystem"} <= seen
