#!/usr/bin/env python3
"""Prove engine/compat.py, and the vLLM internals gthreadd calls, against vLLM wheels without installing them.

gthreadd embeds vLLM's serving layer and reaches into its workers and loaders: none of that is a stable API,
and installing a release to test it needs that release's torch and CUDA. Reading the wheel's sources does not.
For each check below the script finds the definition in the wheel by AST (through re-exports, base classes and
the helpers a function calls) and checks the call shapes gthreadd uses.

    python3 bench/gpu/check_vllm_compat.py WHEEL [WHEEL...]

One block per wheel, one line per check (ok, MISSING or SIGNATURE); exits 1 if any check fails in any wheel.
"""

import argparse
import ast
import sys
import zipfile
from pathlib import Path

COMPAT = Path(__file__).resolve().parents[2] / "engine" / "compat.py"
CALL_DEPTH = 2
"""How many calls down from a function to look for what it does: vLLM moves such code into helpers."""

STATS = ("vllm.v1.metrics.stats",)
CPU_WORKER = ("vllm.v1.worker.cpu_worker",)
CPU_RUNNER = ("vllm.v1.worker.cpu_model_runner",)

# (target, homes, needs), beyond an existence check for every vLLM symbol engine/compat.py imports.
#   target: NAME or CLASS.MEMBER, or FUNC:state.ATTR.MEMBER (the MEMBER of the class that FUNC, or a function it
#     calls, assigns to state.ATTR: the serving objects vllm_engine.py reads from the app state).
#   homes: the modules that may define NAME, newest vLLM first; None: those engine/compat.py imports it from.
#   needs: kind ("async", "def", "property", "class"); first (the parameter after self: "name" or
#     "name: part of its annotation"); params (exactly these after self); calls (call shapes it must accept:
#     a count of positional arguments, then keyword names); abstract ({method: params} our subclass implements,
#     which must be exactly the abstract methods); calls_out ((method, params): every .method(...) call that it,
#     or a function it calls, makes binds to our def with these params).
CHECKS = [
    # engine/vllm_engine.py
    ("AsyncEngineArgs.from_cli_args", None, {"calls": [(1,)]}),
    ("AsyncEngineArgs.create_engine_config", None, {"kind": "def", "calls": [()]}),
    ("AsyncLLM.from_vllm_config", None,
     {"kind": "def", "calls": [(1, "stat_loggers", "enable_log_requests", "disable_log_stats")]}),
    # engine/cpu_executor.py
    ("ParallelConfig.distributed_executor_backend", ("vllm.config",), {}),
    ("ParallelConfig.world_size", ("vllm.config",), {}),
    ("AsyncLLM.get_supported_tasks", None, {"kind": "async", "calls": [()]}),
    ("AsyncLLM.reset_prefix_cache", None, {"kind": "async", "calls": [(), ("reset_running_requests", "reset_connector")]}),
    # a kvCache engine's sleep that keeps its offloaded blocks (engine/offload_sleep.py)
    ("AsyncLLM.pause_generation", None, {"kind": "async", "calls": [("mode", "clear_cache")]}),
    ("AsyncLLM.resume_generation", None, {"kind": "async", "calls": [()]}),
    ("Worker.sleep", ("vllm.v1.worker.gpu_worker",), {"kind": "def", "calls": [(1,)]}),
    ("Worker.wake_up", ("vllm.v1.worker.gpu_worker",), {"kind": "def", "calls": [("tags",)]}),
    ("CacheConfig.kv_offloading_size", ("vllm.config",), {}),
    ("AsyncLLM.sleep", None, {"kind": "async", "calls": [("level", "mode")]}),
    ("AsyncLLM.wake_up", None, {"kind": "async", "calls": [(), ("tags",)]}),
    ("AsyncLLM.is_sleeping", None, {"kind": "async", "calls": [()]}),
    ("AsyncLLM.collective_rpc", None, {"kind": "async", "first": "method", "calls": [(1,), (1, "kwargs")]}),
    ("AsyncLLM.shutdown", None, {"kind": "def", "calls": [()]}),  # run in a thread: must not be a coroutine
    ("AsyncLLM.errored", None, {"kind": "property"}),
    # engine/api_app.py: vLLM's own API application per engine
    ("build_app", None, {"kind": "def", "calls": [(3,)]}),
    ("init_app_state", None, {"kind": "async", "calls": [(4,)]}),
    ("AsyncLLM.model_config", None, {}),
    ("init_app_state:state.openai_serving_models.load_lora_adapter", None, {"kind": "async", "calls": [(1,)]}),
    ("init_app_state:state.openai_serving_models.unload_lora_adapter", None, {"kind": "async", "calls": [(1,)]}),
    ("init_app_state:state.openai_serving_models.lora_requests", None, {}),
    ("ErrorResponse.error", None, {}),
    # level-2 wake on CUDA: collective_rpc("reload_weights") reaches the worker, which reloads through the loader
    ("Worker.reload_weights", ("vllm.v1.worker.gpu_worker",), {"kind": "def", "calls": [()]}),
    ("GPUModelRunner.reload_weights", ("vllm.v1.worker.gpu_model_runner",),
     {"kind": "def", "calls": [()], "calls_out": ("get_all_weights", ("model_config", "model"))}),
    ("DefaultModelLoader.get_all_weights", ("vllm.model_executor.model_loader.default_loader",),
     {"kind": "def", "params": ("model_config", "model")}),
    # engine/args.py
    ("FlexibleArgumentParser", None, {"kind": "class"}),
    ("make_arg_parser", None, {"kind": "def", "calls": [(1,)]}),
    ("validate_parsed_serve_args", None, {"kind": "def", "calls": [(1,)]}),
    ("ModelConfig.enable_sleep_mode", ("vllm.config",), {}),
    ("ParallelConfig.worker_extension_cls", ("vllm.config",), {}),
    # engine/gthread_loader.py
    ("init_logger", ("vllm.logger",), {"kind": "def", "calls": [(1,)]}),
    ("register_model_loader", ("vllm.model_executor.model_loader",), {"kind": "def", "calls": [(1,)]}),
    ("BaseModelLoader", ("vllm.model_executor.model_loader.base_loader",),
     {"kind": "class", "abstract": {"download_model": ("model_config",), "load_weights": ("model", "model_config")}}),
    ("BaseModelLoader.load_config", ("vllm.model_executor.model_loader.base_loader",), {}),
    ("LoadConfig.model_loader_extra_config", ("vllm.config",), {}),
    # engine/cpu_sleep.py
    ("set_current_vllm_config", ("vllm.config",), {"kind": "def", "calls": [(1,)]}),
    ("CPUWorker.model_runner", CPU_WORKER, {}),
    ("CPUWorker.vllm_config", CPU_WORKER, {}),
    ("CPUModelRunner.kv_cache_config", CPU_RUNNER, {}),
    ("CPUModelRunner.compilation_config", CPU_RUNNER, {}),
    ("CPUModelRunner.model", CPU_RUNNER, {}),
    ("CPUModelRunner._cleanup_profiling_kv_cache", CPU_RUNNER, {"kind": "def", "calls": [()]}),
    ("CPUModelRunner.load_model", CPU_RUNNER, {"kind": "def", "calls": [()]}),
    ("CPUModelRunner.initialize_kv_cache", CPU_RUNNER, {"kind": "def", "calls": [(1,)]}),
    ("CompilationConfig.static_forward_context", ("vllm.config",), {}),
    # engine/metrics.py
    # the engine's stat logger stands in for vLLM's Prometheus one: built as StatLoggerManager builds
    # an aggregate logger (vLLM adds its own PrometheusStatLogger unless a given logger is one)
    ("PrometheusStatLogger.__init__", None, {"kind": "def", "params": ("vllm_config", "engine_indexes")}),
    ("PrometheusStatLogger.record", None,
     {"kind": "def", "params": ("scheduler_stats", "iteration_stats", "mm_cache_stats", "engine_idx")}),
    ("StatLoggerManager.__init__", ("vllm.v1.metrics.loggers",), {"kind": "def", "calls": [(1, "custom_stat_loggers")]}),
    *[(f"SchedulerStats.{name}", STATS, {}) for name in ("num_running_reqs", "num_waiting_reqs", "kv_cache_usage")],
    *[(f"IterationStats.{name}", STATS, {}) for name in (
        "num_prompt_tokens", "num_generation_tokens", "num_preempted_reqs", "time_to_first_tokens_iter",
        "inter_token_latencies_iter", "finished_requests")],
    *[(f"FinishedRequestStats.{name}", STATS, {}) for name in ("finish_reason", "e2e_latency")],
]

FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


class Wheel:
    """A wheel's Python sources, parsed on demand."""

    def __init__(self, path: Path):
        self.zip = zipfile.ZipFile(path)
        self.files = {name for name in self.zip.namelist() if name.endswith(".py")}
        self._bindings: dict[str, dict[str, ast.stmt]] = {}

    def release(self) -> str:
        metadata = next(n for n in self.zip.namelist() if n.endswith(".dist-info/METADATA"))
        header = self.zip.read(metadata).decode().split("\n\n", 1)[0]
        fields = dict(line.split(": ", 1) for line in header.splitlines() if ": " in line)
        return f"{fields['Name']} {fields['Version']}"

    def path(self, module: str) -> str | None:
        base = module.replace(".", "/")
        return next((p for p in (f"{base}.py", f"{base}/__init__.py") if p in self.files), None)

    def bindings(self, path: str) -> dict[str, ast.stmt]:
        """What the module at path binds at top level, parsed once."""
        if path not in self._bindings:
            self._bindings[path] = bindings(ast.parse(self.zip.read(path), path).body)
        return self._bindings[path]


class Found:
    """A definition: its file, its node, whether it is a class member, and the re-exports on the way to it."""

    def __init__(self, path: str, node: ast.AST, member: bool = False, via: tuple[str, ...] = ()):
        self.path, self.node, self.member, self.via = path, node, member, via

    def __str__(self) -> str:
        return f"{self.path}:{self.node.lineno}"


def decorators(node: ast.AST) -> set[str]:
    names = set()
    for decorator in getattr(node, "decorator_list", ()):
        decorator = decorator.func if isinstance(decorator, ast.Call) else decorator
        names.add(decorator.attr if isinstance(decorator, ast.Attribute) else getattr(decorator, "id", ""))
    return names


def bindings(body: list[ast.stmt], fields: bool = False) -> dict[str, ast.stmt]:
    """The names a module or class body binds -> the statement, the last winning as at run time.

    `if TYPE_CHECKING:` blocks bind nothing at run time; a bare annotation binds only as a class field (dataclasses,
    pydantic).
    """
    names: dict[str, ast.stmt] = {}
    for stmt in body:
        if isinstance(stmt, (*FUNCTIONS, ast.ClassDef)) and "overload" not in decorators(stmt):
            names[stmt.name] = stmt
        elif isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                for name in target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]:
                    if isinstance(name, ast.Name):
                        names[name.id] = stmt
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and (stmt.value or fields):
            names[stmt.target.id] = stmt
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name.split(".")[0], stmt) for alias in stmt.names if alias.name != "*")
        elif isinstance(stmt, ast.If):
            if "TYPE_CHECKING" not in ast.unparse(stmt.test):
                names.update(bindings(stmt.body, fields))
            names.update(bindings(stmt.orelse, fields))
        elif isinstance(stmt, ast.Try):
            for block in (stmt.body, *(handler.body for handler in stmt.handlers), stmt.orelse, stmt.finalbody):
                names.update(bindings(block, fields))
    return names


def module_of(path: str) -> str:
    return path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def source_module(path: str, node: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` in the file at path reads."""
    if not node.level:
        return node.module
    package = module_of(path).split(".")
    if not path.endswith("/__init__.py"):
        package.pop()
    package = package[: len(package) - node.level + 1]
    return ".".join(package + ([node.module] if node.module else []))


def resolve(wheel: Wheel, module: str, name: str, via: tuple[str, ...] = ()) -> Found | None:
    """What `from module import name` finds: the definition, through any re-exports, or None."""
    path = wheel.path(module)
    if path is None:
        return None
    node = wheel.bindings(path).get(name)
    if node is None:  # PEP 562: vllm.platforms makes current_platform on first access
        lazy = wheel.bindings(path).get("__getattr__")
        if lazy is not None and any(isinstance(n, ast.Constant) and n.value == name for n in ast.walk(lazy)):
            return Found(path, lazy, via=via)
        return None
    if isinstance(node, ast.ImportFrom):
        source = source_module(path, node)
        if wheel.path(source) is not None:  # else outside the wheel: the import is as far as it can be followed
            original = next(a.name for a in node.names if (a.asname or a.name) == name)
            return resolve(wheel, source, original, (*via, f"{path}:{node.lineno}"))
    return Found(path, node, via=via)


def resolve_in(wheel: Wheel, scope: Found, name: str) -> Found | None:
    """What name means inside a function: a function-local import, else the module's binding."""
    for node in ast.walk(scope.node):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    return resolve(wheel, source_module(scope.path, node), alias.name)
    return resolve(wheel, module_of(scope.path), name)


def mro(wheel: Wheel, cls: Found):
    """cls and its base classes found in the wheel, depth first."""
    yield cls
    for base in cls.node.bases:
        base = base.value if isinstance(base, ast.Subscript) else base
        if isinstance(base, ast.Name):
            found = resolve(wheel, module_of(cls.path), base.id)
            if found is not None and isinstance(found.node, ast.ClassDef):
                yield from mro(wheel, found)


def member(wheel: Wheel, cls: Found, name: str) -> Found | None:
    """cls.name: a method, property or field of cls or a base class, or an attribute a method sets on self."""
    for klass in mro(wheel, cls):
        node = bindings(klass.node.body, fields=True).get(name)
        if node is not None:
            return Found(klass.path, node, member=True)
        for node in ast.walk(klass.node):
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and any(is_attribute(t, "self", name) for t in targets):
                return Found(klass.path, node, member=True)
    return None


def is_attribute(node: ast.AST, owner: str, name: str) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == name and getattr(node.value, "id", None) == owner


def reached(wheel: Wheel, function: Found, depth: int = CALL_DEPTH, seen: set | None = None):
    """function and the functions it calls by name, depth calls down."""
    seen = set() if seen is None else seen
    if (function.path, function.node.lineno) in seen:
        return
    seen.add((function.path, function.node.lineno))
    yield function
    for call in ast.walk(function.node) if depth else ():
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name):
            callee = resolve_in(wheel, function, call.func.id)
            if callee is not None and isinstance(callee.node, FUNCTIONS):
                yield from reached(wheel, callee, depth - 1, seen)


def serving_class(wheel: Wheel, function: Found, attribute: str) -> tuple[Found, str] | None:
    """The class that function, or a function it calls, builds for `state.<attribute> = ...`, and where."""
    for scope in reached(wheel, function):
        for node in ast.walk(scope.node):
            if isinstance(node, ast.Assign) and any(is_attribute(t, "state", attribute) for t in node.targets):
                for call in ast.walk(node.value):
                    if isinstance(call, ast.Call) and isinstance(call.func, ast.Name):
                        cls = resolve_in(wheel, scope, call.func.id)
                        if cls is not None and isinstance(cls.node, ast.ClassDef):
                            return cls, f"{scope.path}:{node.lineno}"
    return None


def parameters(found: Found) -> list[tuple[str, ast.arg, ast.expr | None]]:
    """The function's parameters after self or cls: (kind as ast names it, arg, default)."""
    args = found.node.args
    positional = args.posonlyargs + args.args
    defaults = [None] * (len(positional) - len(args.defaults)) + args.defaults
    params = [("posonlyargs" if i < len(args.posonlyargs) else "args", arg, default)
              for i, (arg, default) in enumerate(zip(positional, defaults))]
    if found.member and "staticmethod" not in decorators(found.node):
        params = params[1:]
    if args.vararg:
        params.append(("vararg", args.vararg, None))
    params += [("kwonlyargs", arg, default) for arg, default in zip(args.kwonlyargs, args.kw_defaults)]
    if args.kwarg:
        params.append(("kwarg", args.kwarg, None))
    return params


def render(params: list) -> str:
    parts = []
    for kind, arg, default in params:
        if kind == "kwonlyargs" and "*" not in parts and all(k != "vararg" for k, _, _ in params):
            parts.append("*")
        prefix = {"vararg": "*", "kwarg": "**"}.get(kind, "")
        parts.append(prefix + arg.arg + ("" if default is None else f"={ast.unparse(default)}"))
    return f"({', '.join(parts)})"


def binds(params: list, shape: tuple) -> str | None:
    """Why a call of shape (a count of positional arguments, then keyword names) does not bind; None if it does.

    A keyword must name a parameter: **kwargs would take a misspelt one too.
    """
    count = shape[0] if shape and isinstance(shape[0], int) else 0
    keywords = [k for k in shape if isinstance(k, str)]
    positional = [arg.arg for kind, arg, _ in params if kind in ("posonlyargs", "args")]
    if count > len(positional) and all(kind != "vararg" for kind, _, _ in params):
        return f"takes {len(positional)} positional arguments, not {count}"
    for keyword in keywords:
        if keyword in positional[:count]:
            return f"{keyword} given twice"
        if not any(arg.arg == keyword and kind in ("args", "kwonlyargs") for kind, arg, _ in params):
            return f"has no parameter {keyword}"
    given = set(positional[:count]) | set(keywords)
    missing = [arg.arg for kind, arg, default in params
               if kind in ("posonlyargs", "args", "kwonlyargs") and default is None and arg.arg not in given]
    return f"needs {', '.join(missing)}" if missing else None


def kind_of(found: Found) -> str:
    node = found.node
    if isinstance(node, ast.ClassDef):
        return "class"
    if isinstance(node, FUNCTIONS) and node.name == "__getattr__" and not found.member:
        return "lazy"  # a module's PEP 562 __getattr__ makes it
    if isinstance(node, ast.AsyncFunctionDef):
        return "async"
    if isinstance(node, ast.FunctionDef):
        return "property" if decorators(node) & {"property", "cached_property"} else "def"
    return "value"


def abstract_problems(wheel: Wheel, cls: Found, ours: dict[str, tuple[str, ...]]) -> tuple[list[str], str]:
    """Our subclass implements ours: they must be exactly cls's abstract methods, with the same parameters."""
    first: dict[str, Found] = {}
    for klass in mro(wheel, cls):
        for name, node in bindings(klass.node.body, fields=True).items():
            first.setdefault(name, Found(klass.path, node, member=True))
    abstract = {name: f for name, f in first.items() if "abstractmethod" in decorators(f.node)}
    problems = [f"extra abstract method {name}{render(parameters(f))}" for name, f in abstract.items()
                if name not in ours]
    problems += [f"{name} is not abstract" for name in ours if name in first and name not in abstract]
    for name, names in ours.items():
        if name not in first:
            problems.append(f"has no {name}")
        elif tuple(arg.arg for _, arg, _ in parameters(first[name])) != names:
            problems.append(f"{name}{render(parameters(first[name]))}, ours takes ({', '.join(names)})")
    return problems, "abstract: " + ", ".join(f"{name}{render(parameters(f))}" for name, f in abstract.items())


def calls_out(wheel: Wheel, function: Found, method: str, names: tuple[str, ...]) -> tuple[list[str], str]:
    """Every `.method(...)` call function or a function it calls makes must bind to our def with params names."""
    ours = [("args", ast.arg(arg=name), None) for name in names]
    problems, calls = [], []
    for scope in reached(wheel, function):
        for call in ast.walk(scope.node):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == method):
                continue
            where = f"{scope.path}:{call.lineno}"
            calls.append(f"{method}({', '.join(map(ast.unparse, call.args + call.keywords))}) at {where}")
            if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
                problems.append(f"{where} passes *args or **kwargs: cannot check")
                continue
            why = binds(ours, (len(call.args), *(k.arg for k in call.keywords)))
            for name, arg in zip(names, call.args):  # by its name, an argument meant for another parameter
                passed = getattr(arg, "attr", getattr(arg, "id", None))
                if passed in names and passed != name:
                    why = f"passes {passed} as {name}"
                    break
            if why:
                problems.append(f"{where} {why}")
    if not calls:
        problems.append(f"no .{method}( call reached from {function}")
    return problems, "; ".join(calls)


def elsewhere(wheel: Wheel, name: str) -> list[str]:
    """Where the wheel defines name at module level: where a moved symbol went."""
    hits = []
    for path in sorted(wheel.files):
        if path.startswith("vllm/") and name.encode() in wheel.zip.read(path):
            node = wheel.bindings(path).get(name)
            if isinstance(node, (*FUNCTIONS, ast.ClassDef)):
                hits.append(f"{path}:{node.lineno}")
    return hits


def lookup(wheel: Wheel, homes: tuple[str, ...], target: str) -> tuple[Found | None, str]:
    """target (NAME or CLASS.MEMBER...) from the first home that defines NAME, or None and why not."""
    name, *members = target.split(".")
    found = next((f for f in (resolve(wheel, module, name) for module in homes) if f is not None), None)
    if found is None:
        hits = elsewhere(wheel, name)
        return None, f"not in {' or '.join(homes)}" + (f"; defined at {', '.join(hits)}" if hits else "")
    for name in members:
        if not isinstance(found.node, ast.ClassDef):
            return None, f"{found} is not a class"
        owner, found = found, member(wheel, found, name)
        if found is None:
            return None, f"{owner.node.name} ({owner}) has no {name}"
    return found, ""


def check(wheel: Wheel, homes: tuple[str, ...], target: str, needs: dict) -> tuple[str, str]:
    """(status, where and what) for one check."""
    function, _, state_path = target.partition(":")
    found, why = lookup(wheel, homes, function)
    notes = []
    if found is not None and state_path:
        _, attribute, method = state_path.split(".")
        serving = serving_class(wheel, found, attribute)
        if serving is None:
            return "MISSING", f"no state.{attribute} = Class(...) in {function} ({found}) or what it calls"
        cls, assigned = serving
        notes.append(f"[{cls.node.name}, state.{attribute} set at {assigned}]")
        found = member(wheel, cls, method)
        why = f"{cls.node.name} ({cls}) has no {method}"
    if found is None:
        return "MISSING", why
    kind = kind_of(found)
    problems = [f"is {kind}, not {needs['kind']}"] if needs.get("kind", kind) != kind else []
    if kind in ("async", "def") and not problems:
        params = parameters(found)
        notes.insert(0, render(params))
        if "first" in needs:
            name, _, annotation = needs["first"].partition(":")
            first = params[0][1] if params else None
            if first is None or first.arg != name or annotation.strip() not in ast.unparse(first.annotation or ""):
                problems.append(f"first parameter is not {needs['first']}")
        if "params" in needs and tuple(arg.arg for _, arg, _ in params) != needs["params"]:
            problems.append(f"parameters are not ({', '.join(needs['params'])})")
        for shape in needs.get("calls", ()):
            if why := binds(params, shape):
                problems.append(f"a call with {shape_text(shape)} fails: {why}")
        if "calls_out" in needs:
            more, calls = calls_out(wheel, found, *needs["calls_out"])
            problems += more
            notes.append(calls)
    elif kind == "class" and "abstract" in needs:
        more, abstract = abstract_problems(wheel, found, needs["abstract"])
        problems += more
        notes.insert(0, abstract)
    elif kind == "property":
        notes.insert(0, "property")
    elif kind == "lazy":
        notes.insert(0, "(module __getattr__, made on first access)")
    if found.via:
        notes.append(f"via {found.via[0]}")
    text = " ".join([str(found), *filter(None, notes)])
    return ("SIGNATURE", f"{text} -- {'; '.join(problems)}") if problems else ("ok", text)


def shape_text(shape: tuple) -> str:
    count = shape[0] if shape and isinstance(shape[0], int) else 0
    return "(" + ", ".join(["x"] * count + [f"{k}=x" for k in shape if isinstance(k, str)]) + ")"


def compat_homes(path: Path) -> dict[str, tuple[str, ...]]:
    """engine/compat.py's view: each vLLM symbol it imports -> the modules it imports it from (MOVED: any one)."""
    homes = {}
    for stmt in ast.parse(path.read_text(), str(path)).body:
        if isinstance(stmt, ast.ImportFrom) and (stmt.module or "").split(".")[0] == "vllm":
            homes.update((alias.name, (stmt.module,)) for alias in stmt.names)
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [getattr(stmt, "target", None)]
        if any(getattr(t, "id", None) == "MOVED" for t in targets):
            homes.update(ast.literal_eval(stmt.value))
    return homes


def checks(compat: Path) -> list[tuple[str, tuple[str, ...], str, dict]]:
    """(label, homes, target, needs): an existence check per compat.py symbol CHECKS does not name, then CHECKS."""
    homes = compat_homes(compat)
    named = {target for target, _, _ in CHECKS}
    table = [(name, modules, name, {}) for name, modules in homes.items() if name not in named]
    for target, modules, needs in CHECKS:
        symbol = target.split(":")[0].split(".")[0]
        if modules is None and symbol not in homes:
            sys.exit(f"{compat} no longer imports {symbol}: update CHECKS in {__file__}")
        table.append((target.split(":")[-1], modules or homes[symbol], target, needs))
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheels", nargs="+", type=Path, metavar="WHEEL")
    parser.add_argument("--compat", type=Path, default=COMPAT, help="the compat.py to prove (default: %(default)s)")
    args = parser.parse_args()
    table = checks(args.compat)
    width = max(len(label) for label, *_ in table)
    failed = False
    for path in args.wheels:
        wheel = Wheel(path)
        print(f"{path.name}: {wheel.release()}")
        for label, homes, target, needs in table:
            status, text = check(wheel, homes, target, needs)
            failed |= status != "ok"
            print(f"  {label:<{width}}  {status:<9}  {text}")
        print()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
