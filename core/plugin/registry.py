"""Loading plugins through pluggy and looking them up by kind and name.

Built-in plugins (the modules of ``fedarena.plugins``) and third-party ones
(entry point group ``fedarena``) register through the same hooks.  A plugin
whose import fails is reported with its error while the others still load;
two plugins claiming one name is an error naming both distributions.

Environment controls, for reproducing a run exactly:
``FEDARENA_PLUGINS_ONLY`` (comma-separated entry-point names: load only these
third-party plugins) and ``FEDARENA_PLUGINS_BLOCK`` (never load these).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import os
from importlib import metadata

import attrs
import pluggy

from fedarena.core.plugin import hookspecs
from fedarena.core.errors import FedarenaError
from fedarena.core.plugin.interfaces import Plugin
from fedarena.core.plugin.kinds import KINDS
from fedarena.core.plugin.params import declared_params

ENTRY_POINT_GROUP = "fedarena"
BUILTIN_PACKAGE = "fedarena.plugins"


def builtin_modules() -> list[str]:
    """The modules of the built-in plugins, found by walking
    `fedarena.plugins`: every module or package whose name does not start
    with ``_`` (``_tensor``, ``_tf`` and other shared kits do).  A new
    algorithm is a new file; nothing here lists it."""
    package = importlib.import_module(BUILTIN_PACKAGE)
    found = []
    for info in pkgutil.walk_packages(package.__path__, BUILTIN_PACKAGE + "."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            found.append(info.name)
    return sorted(found)


class PluginConflict(FedarenaError):
    exit_code = 2


@attrs.frozen
class Provider:
    """The distribution that ships a plugin."""

    distribution: str
    version: str


@attrs.frozen
class PluginEntry:
    kind: str
    name: str
    cls: type
    provider: Provider

    @property
    def doc(self) -> str:
        """The first paragraph of the plugin's docstring, on one line."""
        paragraph = (self.cls.__doc__ or "").strip().split("\n\n")[0]
        return " ".join(paragraph.split())

    def params(self):
        return declared_params(self.cls)


class KindRegistrar:
    """What a registration hook receives: ``registry.add(name, cls)``."""

    def __init__(self, registry: "Registry", kind: str, provider: Provider):
        self._registry, self.kind, self._provider = registry, kind, provider

    def add(self, name: str, cls: type) -> None:
        base = KINDS[self.kind].base
        if not (isinstance(cls, type) and issubclass(cls, base) and attrs.has(cls)):
            raise TypeError(f"{self.kind} plugin '{name}' must be an attrs class subclassing {base.__qualname__}")
        self._registry._add(PluginEntry(self.kind, name, cls, self._provider))


class Registry:
    """Every plugin that loaded, by kind and name, and what failed to load."""

    def __init__(self, manager: pluggy.PluginManager):
        self.manager = manager
        self._entries: dict[tuple[str, str], PluginEntry] = {}
        self.load_errors: list[str] = []

    def _add(self, entry: PluginEntry) -> None:
        key = (entry.kind, entry.name)
        if key in self._entries:
            first = self._entries[key].provider
            raise PluginConflict(
                f"two plugins claim the {entry.kind} name '{entry.name}': "
                f"{first.distribution} {first.version} and "
                f"{entry.provider.distribution} {entry.provider.version}; uninstall one, "
                f"or block one with FEDARENA_PLUGINS_BLOCK"
            )
        self._entries[key] = entry

    def get(self, kind: str, name: str) -> PluginEntry | None:
        return self._entries.get((kind, name))

    def names(self, kind: str) -> list[str]:
        return sorted(name for k, name in self._entries if k == kind)

    def entries(self, kind: str | None = None) -> list[PluginEntry]:
        return sorted(
            (e for e in self._entries.values() if kind is None or e.kind == kind), key=lambda e: (e.kind, e.name)
        )

    def _entry_of(self, plugin: Plugin) -> PluginEntry | None:
        return next((e for e in self._entries.values() if e.cls is type(plugin)), None)

    def name_of(self, plugin: Plugin) -> str:
        """The name a plugin instance's class is registered under."""
        entry = self._entry_of(plugin)
        return entry.name if entry else type(plugin).__name__

    def label(self, plugin: Plugin) -> str:
        """The plugin as a scenario writes it, nested plugins included:
        ``backdoor(trigger = pixel(size = 4))``."""
        return plugin_label(self.name_of(plugin), plugin, self.name_of)

    def provider_of(self, plugin: Plugin) -> Provider:
        entry = self._entry_of(plugin)
        return entry.provider if entry else Provider("unknown", "")

    @property
    def hook(self):
        return self.manager.hook


def _env_names(variable: str) -> set[str]:
    return {name.strip() for name in os.environ.get(variable, "").split(",") if name.strip()}


def _fedarena_provider() -> Provider:
    try:
        return Provider("fedarena", metadata.version("fedarena"))
    except metadata.PackageNotFoundError:
        return Provider("fedarena", "0+unknown")


def build_registry(extra_plugins: tuple = ()) -> Registry:
    """Load built-in and installed plugins and collect their registrations.

    ``extra_plugins`` are (name, plugin object) pairs registered as if they
    came from an entry point (used by the pytest fixtures).
    """
    manager = pluggy.PluginManager("fedarena")
    manager.add_hookspecs(hookspecs)
    registry = Registry(manager)
    providers: dict[str, Provider] = {}

    builtin = _fedarena_provider()
    for module_name in builtin_modules():
        manager.register(importlib.import_module(module_name), name=module_name)
        providers[module_name] = builtin

    only, blocked = _env_names("FEDARENA_PLUGINS_ONLY"), _env_names("FEDARENA_PLUGINS_BLOCK")
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name in blocked or (only and entry_point.name not in only):
            continue
        dist = entry_point.dist
        provider = Provider(dist.name, dist.version) if dist else Provider(entry_point.value, "")
        try:
            plugin = entry_point.load()
            manager.register(plugin, name=entry_point.name)
        except Exception as error:  # a broken plugin must not stop the others
            registry.load_errors.append(
                f"plugin '{entry_point.name}' ({provider.distribution}) failed to load: "
                f"{type(error).__name__}: {error}"
            )
            continue
        providers[entry_point.name] = provider
    for name, plugin in extra_plugins:
        if manager.is_registered(plugin):  # already loaded from its entry point
            continue
        manager.register(plugin, name=name)
        providers[name] = Provider(name, "")

    try:
        manager.check_pending()
    except pluggy.PluginValidationError as error:
        raise PluginConflict(f"a plugin implements a hook that does not exist: {error}") from None

    for kind, spec in KINDS.items():
        for impl in getattr(manager.hook, spec.hook).get_hookimpls():
            registrar = KindRegistrar(registry, kind, providers.get(impl.plugin_name, Provider(impl.plugin_name, "")))
            try:
                impl.function(registry=registrar)
            except PluginConflict:
                raise
            except Exception as error:
                registry.load_errors.append(
                    f"plugin '{impl.plugin_name}' failed to register its {kind}s: {type(error).__name__}: {error}"
                )
    return registry


@functools.lru_cache(maxsize=1)
def default_registry() -> Registry:
    return build_registry()


def plugin_label(name: str, plugin, name_of=None) -> str:
    """``krum(f = 2)``: the name and the parameters that differ from their
    defaults.  ``name_of(plugin)`` names nested plugins (``backdoor(trigger =
    pixel(size = 4))``); without it they show as their repr."""

    def text(value) -> str:
        if name_of is not None and isinstance(value, Plugin):
            return plugin_label(name_of(value), value, name_of)
        return repr(value)

    changed = [
        f"{field.name} = {text(getattr(plugin, field.name))}"
        for field in attrs.fields(type(plugin))
        if field.init and getattr(plugin, field.name) != field.default
    ]
    return f"{name}({', '.join(changed)})" if changed else name
