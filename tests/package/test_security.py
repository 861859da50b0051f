"""Security: what a scenario, a data file, a results file and the commands
can make fedarena do.  docs/security.md states each claim with the test
here that proves it.

A scenario is data: its strings stay strings (never evaluated, never a
shell command, never a module name), its plugin names are looked up in the
registry only, and a run reads the files it names and nothing else of the
user's.  Plugins come from fedarena itself and from installed entry points.
Results and data files are read without unpickling.  A run opens no TCP
port; ``fedarena worker`` listens on loopback unless told otherwise, and
says that it has no authentication.

The run-level tests share one run (`audited_run`): a subprocess that
records every file Python opens (``sys.addaudithook``), and that pauses
after round 2 while the test reads its listening sockets.
"""

from __future__ import annotations

import ast
import ipaddress
import json
import os
import pickle
import signal
import site
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import REPO, fedarena_command, tiny_scenario
from fedarena.core.errors import RunError, ScenarioError
from fedarena.core.language.parser import parse
from fedarena.core.plugin.interfaces import Facts
from fedarena.core.plugin.registry import ENTRY_POINT_GROUP, build_registry, default_registry
from fedarena.core.scenario.check import Checker
from fedarena.core.scenario.sweep import check_points


def fls_string(text: str) -> str:
    """``text`` as a scenario string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def payloads(marker: Path) -> list[str]:
    """Strings that would create ``marker`` if anything evaluated them as
    Python, ran them through a shell, or formatted them as a template."""
    return [
        f"__import__('os').system('touch {marker}')",
        f"eval(\"open('{marker}', 'w')\")",
        f"$(touch {marker})",
        f"`touch {marker}`; touch {marker}",
        f"{{__import__('os').system('touch {marker}')}}",
    ]


SCENARIO = """\
scenario {title} {{
  seed 1
  rounds 2
  dataset synthetic(samples = 120, features = 4, classes = 3)
  split iid over 4 clients
  model mlp(hidden = [4])
  training {{
    clients_per_round 2
    batch_size 16
  }}
  aggregator {aggregator}
  output {output}
}}
{sweep}"""


def scenario_text(title='"t"', aggregator="fedavg", output='"out.h5"', sweep="") -> str:
    return SCENARIO.format(title=title, aggregator=aggregator, output=output, sweep=sweep)


@pytest.fixture(scope="module")
def registry():
    return default_registry()


# --------------------------------------------------------------------------
# 1. A scenario's text is never code.


def string_parameters(registry):
    """(kind, plugin, parameter, is a list) for every parameter of type str
    or list of str of every plugin installed: today's and tomorrow's."""
    found = []
    for entry in registry.entries():
        for info in entry.params():
            if info.type_name() in ("str", "list of str"):
                found.append((entry.kind, entry.name, info, info.type_name() != "str"))
    return found


def test_code_in_any_string_parameter_stays_a_string(tmp_path, registry):
    """Every str parameter of every plugin, given Python, shell and template
    text, through the parser, the checker and the plugin's own check: the
    plugin holds the text as it was written, or the scenario is refused; the
    marker file that evaluating it would create never appears."""
    marker = tmp_path / "marker"
    found = string_parameters(registry)
    assert {(kind, name, info.name) for kind, name, info, _ in found} >= {
        ("attack", "edge_case", "path"), ("dataset", "mnist", "path"), ("attack", "label_flip", "mode")}
    facts = Facts(num_clients=4, clients_per_round=2, num_classes=10, input_shape=(28, 28, 1),
                  scenario_dir=str(tmp_path))
    held = refused = 0
    for kind, name, info, is_list in found:
        for payload in payloads(marker):
            value = f"[{fls_string(payload)}]" if is_list else fls_string(payload)
            call = parse(scenario_text(aggregator=f"{name}({info.name} = {value})"), "s.fls").all("aggregator")[0].value
            checker = Checker(registry, str(tmp_path / "s.fls"), "")
            plugin = checker.resolve(kind, call)
            if plugin is None:
                assert checker.problems, (name, info.name)
                refused += 1
                continue
            assert getattr(plugin, info.name) == ((payload,) if is_list else payload), (name, info.name)
            held += 1
            plugin.check(facts)
            assert not marker.exists(), (name, info.name, payload)
    assert not marker.exists()
    assert held and refused  # both ways were taken: free text kept, choices refused


def test_code_in_a_title_output_or_sweep_value_stays_a_string(tmp_path, registry):
    marker = tmp_path / "marker"
    for payload in payloads(marker):
        text = scenario_text(title=fls_string(payload), output=fls_string(payload + ".h5"))
        scenario = check_points(parse(text, str(tmp_path / "s.fls")), registry)[0][1]
        # The output is a path like any other: taken from the scenario's folder, never run.
        assert scenario.title == payload and scenario.output == str(tmp_path / (payload + ".h5"))
        swept = scenario_text(sweep=f"sweep {{\n  aggregator in [fedavg, {fls_string(payload)}]\n}}\n")
        with pytest.raises(ScenarioError, match="unknown aggregator|aggregator"):
            check_points(parse(swept, str(tmp_path / "s.fls")), registry)
    assert not marker.exists()


PROBE = "fedarena_security_probe"


@pytest.fixture
def importable_probe(tmp_path, monkeypatch):
    """A module and a package named ``PROBE`` on the module path, each of
    which would create a marker file if imported; yields the marker."""
    marker = tmp_path / "imported"
    folder = tmp_path / "modules"
    (folder / f"{PROBE}_pkg").mkdir(parents=True)
    code = f"open({str(marker)!r}, 'w').close()\n"
    (folder / f"{PROBE}.py").write_text(code)
    (folder / f"{PROBE}_pkg" / "__init__.py").write_text(code)
    (folder / f"{PROBE}_pkg" / "mod.py").write_text(code)
    monkeypatch.syspath_prepend(str(folder))
    before = set(sys.modules)
    yield marker
    assert not {m for m in set(sys.modules) - before if PROBE in m}
    assert not marker.exists()


def test_an_unknown_plugin_name_never_imports_a_module_of_that_name(tmp_path, registry, importable_probe):
    """A name that is an importable module is an unknown plugin, in every
    slot of a scenario and of a sweep; nothing is imported."""
    slots = {
        "aggregator": ("aggregator fedavg", f"aggregator {PROBE}"),
        "model": ("model mlp(hidden = [4])", f"model {PROBE}"),
        "dataset": ("dataset synthetic(samples = 120, features = 4, classes = 3)", f"dataset {PROBE}"),
        "split": ("split iid over", f"split {PROBE} over"),
    }
    for kind, (old, new) in slots.items():
        text = scenario_text().replace(old, new)
        with pytest.raises(ScenarioError, match=f"unknown {kind} '{PROBE}'"):
            check_points(parse(text, str(tmp_path / "s.fls")), registry)
    swept = scenario_text(sweep=f"sweep {{\n  aggregator in [fedavg, {PROBE}]\n}}\n")
    with pytest.raises(ScenarioError, match=f"unknown aggregator '{PROBE}'"):
        check_points(parse(swept, str(tmp_path / "s.fls")), registry)
    for value in (PROBE, f"{PROBE}_pkg.mod", f"{PROBE}_pkg:mod"):
        swept = scenario_text(sweep=f"sweep {{\n  aggregator in [fedavg, {fls_string(value)}]\n}}\n")
        with pytest.raises(ScenarioError, match=f"needs aggregator names or calls, got string \"{value}\""):
            check_points(parse(swept, str(tmp_path / "s.fls")), registry)
    # The environment controls narrow the entry points; they name none to import.
    for variable in ("FEDARENA_PLUGINS_ONLY", "FEDARENA_PLUGINS_BLOCK"):
        os.environ[variable] = f"{PROBE},{PROBE}_pkg.mod"
        try:
            build_registry()
        finally:
            del os.environ[variable]


def test_a_dotted_or_quoted_module_path_is_refused_as_a_plugin_name(tmp_path, registry):
    """A plugin name is one word: the grammar has no dotted, quoted or
    ``module:object`` names for plugins."""
    for written, expected in (
        ("os.system", "s.fls:11:16: unexpected '.'; expected a statement, '(' or '}'"),
        ("fedarena.plugins.aggregators.krum", "s.fls:11:22: unexpected '.'; expected a statement, '(' or '}'"),
        ('"os.system"', "s.fls:11:14: unexpected '\"os.system\"'; expected a name"),
        ("os:system", "s.fls:11:16: unexpected character ':'"),
    ):
        with pytest.raises(ScenarioError) as caught:
            check_points(parse(scenario_text(aggregator=written), "s.fls"), registry)
        assert str(caught.value).splitlines()[0] == expected


# --------------------------------------------------------------------------
# 2. Plugins come from fedarena and from installed entry points only.


def plant_plugin(folder: Path, marker: Path) -> None:
    """A plugin that is not installed: an importable module registering the
    aggregator ``planted``, and a ``.dist-info`` that declares it as a
    ``fedarena`` entry point, as an installed distribution would."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "planted_plugin.py").write_text(textwrap.dedent(f"""\
        open({str(marker)!r}, "w").close()
        from fedarena import hookimpl
        from fedarena.plugins.aggregators.fedavg import FedAvg

        @hookimpl
        def fedarena_register_aggregators(registry):
            registry.add("planted", FedAvg)
        """))
    info = folder / "planted_plugin-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: planted-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nplanted = planted_plugin\n")


def test_a_plugin_beside_the_scenario_or_in_the_working_directory_is_not_loaded(tmp_path):
    """The planted plugin sits beside the scenario, which is the working
    directory of the installed ``fedarena`` command: `check` does not know
    the name and nothing of it runs.  Put on the module path (as installing
    it would), the same files load: the plant is a working plugin."""
    marker = tmp_path / "loaded"
    project = tmp_path / "project"
    plant_plugin(project, marker)
    scenario = project / "s.fls"
    scenario.write_text(scenario_text(aggregator="planted"))
    command = Path(sys.executable).parent / "fedarena"
    assert command.is_file()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    refused = subprocess.run([str(command), "check", "s.fls"], cwd=project, env=env, capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode == 2, refused.stderr
    assert "unknown aggregator 'planted'" in refused.stderr
    assert not marker.exists()
    installed = subprocess.run([str(command), "check", "s.fls"], cwd=project, capture_output=True, text=True,
                               timeout=120, env=dict(env, PYTHONPATH=str(project)))
    assert installed.returncode == 0, installed.stderr
    assert marker.exists()


# --------------------------------------------------------------------------
# 3. Data and results files are read without running code.


class Payload:
    """Unpickled, it creates the file ``path``."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def idx_bytes(array: np.ndarray) -> bytes:
    array = np.asarray(array, np.uint8)
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def test_data_files_crafted_to_run_code_are_refused_without_running_it(tmp_path):
    """cifar10's python batches (a restricted unpickler), a Keras-layout
    .npz for mnist and the edge_case .npz (NumPy without pickle): a file
    whose loading would run a command is an error, and the command never runs."""
    from fedarena.plugins.attacks.edge_case import read_edge_set
    from fedarena.plugins.datasets.cifar10 import Cifar10
    from fedarena.plugins.datasets.mnist import Mnist

    marker = tmp_path / "ran"
    cifar = tmp_path / "cifar"
    cifar.mkdir()
    (cifar / "test_batch").write_bytes(pickle.dumps({b"data": Payload(marker), b"labels": [0]}, protocol=2))
    with pytest.raises(RunError, match="refusing to load posix.system"):
        Cifar10(path=str(cifar), holdout=1).load(0)

    mnist = tmp_path / "mnist"
    mnist.mkdir()
    evil = np.array([Payload(marker)], dtype=object)
    np.savez(mnist / "mnist.npz", x_train=evil, y_train=evil, x_test=evil, y_test=evil)
    with pytest.raises(RunError, match="Object arrays cannot be loaded when allow_pickle=False"):
        Mnist(path=str(mnist)).load(0)

    np.savez(tmp_path / "edge.npz", x_train=evil, x_test=evil)
    with pytest.raises(ValueError, match="allow_pickle=False"):
        read_edge_set(tmp_path / "edge.npz", (28, 28, 1))
    assert not marker.exists()
    pickle.loads(pickle.dumps(Payload(marker)))  # the payload works: unpickled, it runs
    assert marker.exists()


def test_a_results_file_crafted_to_run_code_is_read_without_running_it(tmp_path, audited_run):
    """A real results file with pickles planted where the reader looks (a
    root attribute, a plugin's attribute, a metric's rows) and where it does
    not (an opaque dataset): `fedarena show` and `fedarena.open_results`
    read it, and nothing in it runs."""
    import fedarena
    from fedarena.core.cli.main import main

    marker = tmp_path / "ran"
    path = tmp_path / "crafted.h5"
    path.write_bytes(audited_run.output.read_bytes())
    planted = pickle.dumps(Payload(marker), protocol=0)  # text: it fits a string attribute or dataset
    with h5py.File(path, "r+") as f:
        f.attrs["note"] = np.void(planted)
        f.attrs["pickled"] = planted
        plugin = next(iter(f["plugins"].values()))
        plugin.attrs["state"] = np.void(planted)
        f.create_dataset("evil", data=np.frombuffer(planted, np.uint8).view(f"V{len(planted)}"))
        metric = next(iter(f["metrics"].values()))
        del f[metric.name]
        f.create_dataset(metric.name, data=np.array([planted] * len(metric), dtype=object),
                         dtype=h5py.string_dtype("ascii"))
    assert main(["show", str(path)]) == 0
    results = fedarena.open_results(path)
    assert results.attrs["pickled"] == planted or results.attrs["pickled"] == planted.decode("latin-1")
    results.metrics, results.clients, results.index, results.show()
    assert not marker.exists()


RESULTS = REPO / "core" / "results"


def calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            function = node.func
            name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
            yield node, name


def test_the_results_reader_never_unpickles():
    """No module of core/results imports pickle (or any loader that runs
    code), calls eval or exec, or lets NumPy unpickle."""
    modules = sorted(RESULTS.glob("*.py"))
    assert RESULTS / "reader.py" in modules
    for module in modules:
        tree = ast.parse(module.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not {"pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"} & set(
                    n.split(".")[0] for n in names), f"{module.name}:{node.lineno}"
        for node, name in calls(tree):
            assert name not in ("eval", "exec", "read_pickle", "Unpickler"), f"{module.name}:{node.lineno}"
            for keyword in node.keywords:
                assert not (keyword.arg == "allow_pickle" and not (
                    isinstance(keyword.value, ast.Constant) and keyword.value.value is False)), \
                    f"{module.name}:{node.lineno}"


# Every place in fedarena that turns data into code: the only ones there
# are, each with why it is safe.  A new one fails this test until it is
# reviewed and listed here.
CODE_LOADING = {
    # the built-in plugins: fedarena.plugins and the modules found under it
    ("core/plugin/registry.py", "importlib.import_module"): 2,
    # installed entry points of the "fedarena" group
    ("core/plugin/registry.py", "entry_point.load"): 1,
    # the public API's names, from a fixed table
    ("core/_package/__init__.py", "importlib.import_module"): 1,
    # "tensorflow", lazily
    ("plugins/_tf.py", "importlib.import_module"): 1,
}
LOADERS = {"pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve", "joblib", "yaml"}
KERAS_LOADERS = {"load_model", "model_from_json", "model_from_yaml", "model_from_config", "deserialize_keras_object",
                 "deserialize"}


def restricted_unpicklers(tree: ast.AST) -> set[str]:
    """Classes deriving from ``pickle.Unpickler`` that override
    ``find_class`` (the hook through which a pickle names what to call)."""
    return {
        node.name for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and any(ast.unparse(b).endswith("Unpickler") for b in node.bases)
        and any(isinstance(f, ast.FunctionDef) and f.name == "find_class" for f in node.body)
    }


def test_only_the_known_places_load_code():
    """Over core/ and plugins/: imports by name, entry points, eval and
    exec are only the reviewed calls above; pickles are read only by an
    unpickler that overrides ``find_class``; NumPy never unpickles
    (``allow_pickle=False``), Keras deserializes with ``safe_mode=True``,
    and no subprocess goes through a shell."""
    found: dict[tuple[str, str], int] = {}
    for folder in ("core", "plugins"):
        for module in sorted((REPO / folder).rglob("*.py")):
            where = module.relative_to(REPO).as_posix()
            tree = ast.parse(module.read_text())
            safe_unpicklers = restricted_unpicklers(tree)
            for node, name in calls(tree):
                function = node.func
                owner = ast.unparse(function.value) if isinstance(function, ast.Attribute) else ""
                keywords = {k.arg: k.value for k in node.keywords}
                place = f"{where}:{node.lineno}"

                def flag_is(keyword, value):
                    given = keywords.get(keyword)
                    return isinstance(given, ast.Constant) and given.value is value

                assert not flag_is("shell", True), f"{place}: a shell"
                if name == "load" and owner == "np":
                    assert flag_is("allow_pickle", False), f"{place}: np.load without allow_pickle=False"
                elif name in KERAS_LOADERS and "keras" in owner:
                    assert flag_is("safe_mode", True), f"{place}: Keras deserializes without safe_mode=True"
                elif name in ("load", "loads", "Unpickler") and owner.split(".")[0] in LOADERS:
                    raise AssertionError(f"{place}: {owner}.{name} can run code from the data it reads")
                elif name == "load" and isinstance(function, ast.Attribute) and isinstance(function.value, ast.Call):
                    maker = function.value.func
                    assert getattr(maker, "id", None) in safe_unpicklers, f"{place}: {ast.unparse(node)}"
                elif name in ("import_module", "__import__", "eval", "exec", "run_path", "run_module", "system",
                              "popen") or (name == "load" and "entry_point" in owner):
                    key = (where, f"{owner}.{name}" if owner else name)
                    found[key] = found.get(key, 0) + 1
    assert found == CODE_LOADING


# --------------------------------------------------------------------------
# 4. Relative paths are read from the scenario's folder.


def placed(kind: str, call: str) -> str:
    """A scenario using ``call`` as its plugin of ``kind``."""
    text = scenario_text()
    if kind == "dataset":
        return text.replace("dataset synthetic(samples = 120, features = 4, classes = 3)", f"dataset {call}")
    if kind == "model":
        return text.replace("model mlp(hidden = [4])", f"model {call}")
    if kind == "attack":
        return text.replace("  aggregator", f"  attack {call} {{\n    clients 1\n  }}\n  aggregator")
    raise AssertionError(f"no place for a {kind} with a path parameter: add one to `placed`")


def test_every_path_parameter_is_read_from_the_scenario_folder(tmp_path, monkeypatch, registry):
    """Every plugin parameter named ``path`` (datasets, edge_case, any new
    one), written relative: from another working directory that holds a
    decoy at the same relative place, what the plugin reads (or says it
    cannot find) is the file beside the scenario."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    (elsewhere / "data").mkdir(parents=True)
    (elsewhere / "data" / "thing").write_text("decoy")
    monkeypatch.chdir(elsewhere)
    expected = str(project / "data" / "thing")
    tried = []
    for entry in registry.entries():
        params = {info.name: info for info in entry.params()}
        if "path" not in params:
            continue
        needed = "".join(f", {name} = 1" for name, info in params.items() if info.required and name != "path")
        text = placed(entry.kind, f'{entry.name}(path = "data/thing"{needed})')
        try:
            scenario = check_points(parse(text, str(project / "s.fls")), registry)[0][1]
        except ScenarioError as error:
            message = str(error)
        else:
            plugin = scenario.dataset if entry.kind == "dataset" else None
            assert plugin is not None, f"{entry.kind} '{entry.name}' accepted a missing file at check time"
            assert plugin.path == expected
            if entry.name == "emnist":  # its loader would download into the folder: its path suffices
                tried.append(entry.name)
                continue
            with pytest.raises(RunError) as caught:
                plugin.load(0)
            message = str(caught.value)
        assert expected in message and "decoy" not in message, (entry.name, message)
        tried.append(entry.name)
    assert {"mnist", "fashion_mnist", "cifar10", "emnist", "edge_case"} <= set(tried)


def test_a_tilde_in_a_path_parameter_is_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    facts = Facts(num_clients=4, clients_per_round=2, num_classes=3, input_shape=(4,), scenario_dir="/elsewhere")
    assert facts.resolve("~/data/x.npz") == tmp_path / "data" / "x.npz"
    assert facts.resolve("data/x.npz") == Path("/elsewhere/data/x.npz")
    assert facts.resolve("/abs/x.npz") == Path("/abs/x.npz")


# --------------------------------------------------------------------------
# 5. A run: the files it opens, the ports it opens.


def listening_sockets(pids) -> list[tuple[str, int]]:
    """The (address, port) of every listening TCP socket (IPv4 or IPv6)
    that one of ``pids`` holds, found through its file descriptors and its
    network namespace's /proc/PID/net/tcp{,6}; an IPv4-mapped IPv6
    address is given as the IPv4 one."""
    found = []
    for pid in pids:
        inodes = set()
        try:
            descriptors = os.listdir(f"/proc/{pid}/fd")
        except OSError:  # gone
            continue
        for fd in descriptors:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:  # closed while we looked
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:["):-1])
        for table in ("tcp", "tcp6"):
            try:
                lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    address, port = fields[1].split(":")
                    raw = bytes.fromhex(address)
                    # each 32-bit word is in host (little-endian) order
                    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                    ip = ipaddress.ip_address(raw)
                    ip = getattr(ip, "ipv4_mapped", None) or ip  # ::ffff:127.0.0.1 is 127.0.0.1
                    found.append((str(ip), int(port, 16)))
    return found


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += parents.get(current, [])
    return tree


def test_listening_sockets_sees_a_listening_socket_and_not_a_bound_one():
    """The sampler the port tests rely on: it finds a socket that listens,
    IPv4 and IPv6, and not one that is only bound or connected."""
    import socket

    with socket.socket() as listener, socket.socket(socket.AF_INET6) as listener6, socket.socket() as bound:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener6.bind(("::1", 0))
        listener6.listen()
        bound.bind(("127.0.0.1", 0))
        found = listening_sockets([os.getpid()])
        assert ("127.0.0.1", listener.getsockname()[1]) in found
        assert ("::1", listener6.getsockname()[1]) in found
        assert ("127.0.0.1", bound.getsockname()[1]) not in found


AUDITED = textwrap.dedent("""\
    import json, os, sys, time
    from pathlib import Path

    events, log, paused, go = [], Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])

    def record(event, args):
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            events.append(os.path.abspath(os.fsdecode(args[0])))

    sys.addaudithook(record)

    from fedarena import hookimpl
    from fedarena.core.plugin import registry as plugins

    class PauseAfterRound2:
        # Stops the run after round 2 until the test has looked at it.
        @hookimpl
        def fedarena_round_end(self, run, round, metrics):
            if round == 2:
                paused.write_text("")
                deadline = time.monotonic() + 120
                while not go.exists() and time.monotonic() < deadline:
                    time.sleep(0.02)

    loaded = plugins.build_registry(extra_plugins=(("pause", PauseAfterRound2()),))
    plugins.default_registry = lambda: loaded
    from fedarena.core.cli.main import main

    code = main(sys.argv[4:])
    log.write_text(json.dumps({"code": code, "opened": events}))
""")

AUDITED_SCENARIO = """\
scenario "audited" {
  seed 1
  rounds 4
  dataset mnist(path = "data")
  split iid over 4 clients
  model mlp(hidden = [4])
  training {
    clients_per_round 2
    batch_size 16
  }
  attack edge_case(path = "edge.npz", target = 1) {
    clients 1
  }
  output "out.h5"
}
"""


class AuditedRun:
    """What `audited_run` saw: the files the run opened, the listening
    sockets of its processes (by sample), the files its scenario names."""

    def __init__(self, **fields):
        self.__dict__.update(fields)


@pytest.fixture(scope="module")
def audited_run(tmp_path_factory):
    """``fedarena run`` (default backend) of a scenario that names a dataset
    folder and an edge-case file, started from another folder, with every
    file Python opens recorded; its listening sockets are sampled from start
    to end, and three times while it waits after round 2 (so that, however
    fast the machine, some samples fall in the middle of the run)."""
    root = tmp_path_factory.mktemp("audited")
    project, elsewhere, scratch = root / "project", root / "elsewhere", root / "tmp"
    for folder in (project / "data", elsewhere, scratch):
        folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 20)):
        (project / "data" / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(rng.integers(0, 256, (n, 28, 28))))
        (project / "data" / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(np.arange(n) % 10))
    np.savez(project / "edge.npz", x_train=rng.random((4, 28, 28, 1), np.float32),
             x_test=rng.random((3, 28, 28, 1), np.float32))
    (project / "s.fls").write_text(AUDITED_SCENARIO)
    script = root / "audited.py"
    script.write_text(AUDITED)
    log, paused, go = scratch / "log.json", scratch / "paused", scratch / "go"
    env = {k: v for k, v in os.environ.items() if k not in ("FEDARENA_BACKEND", "TMPDIR")}
    env.update(TMPDIR=str(scratch), TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.Popen(
        [sys.executable, str(script), str(log), str(paused), str(go), "run", "../project/s.fls", "--progress", "none"],
        cwd=elsewhere, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    samples, paused_samples = [], []
    try:
        deadline = time.monotonic() + 300
        while process.poll() is None and time.monotonic() < deadline:
            sample = listening_sockets(process_tree(process.pid))
            samples.append(sample)
            if paused.exists() and not go.exists():
                paused_samples.append(sample)
                if len(paused_samples) == 3:
                    go.write_text("")
            time.sleep(0.05)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    record = json.loads(log.read_text())
    assert record["code"] == 0
    return AuditedRun(
        opened=record["opened"], samples=samples, paused_samples=paused_samples, output=project / "out.h5",
        scratch=scratch, scenario=project / "s.fls", data=project / "data", edge=project / "edge.npz",
    )


def allowed_roots(scratch: Path) -> list[Path]:
    """Where a run may read or write files the scenario does not name: the
    Python installation and fedarena's own code, the run's temporary folder,
    the kernel's and system's files, and Keras' own settings."""
    import fedarena
    import fedarena.core
    import fedarena.grammar
    import fedarena.plugins

    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *site.getsitepackages()}
    for package in (fedarena, fedarena.core, fedarena.plugins, fedarena.grammar):
        roots |= set(package.__path__)
    roots |= {str(scratch), "/proc", "/sys", "/dev", "/etc", "/usr/share/zoneinfo", str(Path.home() / ".keras" /
                                                                                          "keras.json")}
    return [Path(os.path.realpath(r)) for r in roots]


def inside(path: Path, roots) -> bool:
    return any(path == root or root in path.parents for root in roots)


def test_a_run_opens_only_the_files_its_scenario_names(audited_run):
    """Every file the run opened through Python, outside the installation,
    the temporary folder and the system's files, is the scenario, a file of
    its dataset folder, its edge-case file, or the results file and its
    companions (``.lock``, ``.new``)."""
    named = [audited_run.scenario, audited_run.data, audited_run.edge]
    companions = {audited_run.output, *(audited_run.output.with_name(audited_run.output.name + s)
                                        for s in (".lock", ".new"))}
    roots = allowed_roots(audited_run.scratch)
    opened = {Path(os.path.realpath(p)) for p in audited_run.opened}
    unnamed = sorted(str(p) for p in opened if not inside(p, roots) and not inside(p, named) and p not in companions)
    assert unnamed == []
    # The hook saw the run's own reads: the scenario, each dataset file, the edge cases, the lock.
    assert audited_run.scenario in opened and audited_run.edge in opened
    assert {p.name for p in opened if p.parent == audited_run.data} == {
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}
    assert audited_run.output.with_name("out.h5.lock") in opened
    # and the temporary folder was the one given (the client store, TensorFlow's generated code).
    assert any(audited_run.scratch in p.parents for p in opened)


def test_a_run_opens_no_tcp_port(audited_run):
    """The run's process and its children hold no listening TCP socket at
    any sample, from start to end, including three taken while it waits
    after round 2."""
    assert len(audited_run.paused_samples) == 3
    assert len(audited_run.samples) > len(audited_run.paused_samples)
    assert [s for s in audited_run.samples if s] == []


# --------------------------------------------------------------------------
# 6. `fedarena worker`: loopback by default, and says it has no authentication.


def test_fedarena_worker_listens_on_loopback_only_by_default_and_warns(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "FEDARENA_BACKEND"}
    process = subprocess.Popen(fedarena_command("worker"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(env, TF_CPP_MIN_LOG_LEVEL="3"))
    try:
        line = process.stdout.readline()
        assert line.startswith("fedarena worker serving at 127.0.0.1:"), line + process.stderr.read()
        port = int(line.split()[4].rsplit(":", 1)[1])
        sockets = listening_sockets(process_tree(process.pid))
        assert ("127.0.0.1", port) in sockets
        assert sockets and all(ipaddress.ip_address(address).is_loopback for address, _ in sockets), sockets
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 130
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    err = process.stderr.read()
    assert (f"fedarena: warning: loopback-only: the TFF executor service at 127.0.0.1:{port} is reachable from this "
            f"machine alone, but it has no authentication: any user of this machine can run code as you through it. "
            f"A --host other than a loopback address would let other machines do the same.\n") in err


def test_a_worker_on_another_address_warns_more_loudly():
    """Without binding anything: what each kind of worker says for every
    interface and for one outside address, against loopback."""
    from fedarena.core.execution.backends import service, worker

    loopback = service.serving_notice("127.0.0.1", "127.0.0.1:5000")[0]
    every = service.serving_notice("0.0.0.0", "0.0.0.0:5000")[0]
    outside = service.serving_notice("192.0.2.7", "192.0.2.7:5000")[0]
    assert loopback.startswith("fedarena: warning: loopback-only") and "no authentication" in loopback
    assert every == (
        "fedarena: WARNING: the TFF executor service listens on port 5000 of EVERY network interface of this "
        "machine and has no authentication or encryption: anyone who can reach it can run code here as you. Use it "
        "only on a trusted network or behind a firewall; without --host it listens on 127.0.0.1, this machine only.")
    assert "192.0.2.7:5000, an address other machines may reach," in outside and "anyone who can reach" in outside

    class Isolated:  # what `serving_notice` reads of a started TFF worker
        isolated, port, exposure = True, 5000, ""

        def __init__(self, host):
            self.host, self.address = host, f"{host}:5000"

    assert "no authentication" in worker.serving_notice(Isolated("127.0.0.1"))[0]
    assert worker.serving_notice(Isolated("0.0.0.0"))[0].startswith(
        "WARNING: the TFF worker listens on port 5000 of EVERY network interface")
