"""A network's layer table: module names, the other names users know, channel counts.

Torch-free, so that validating a flag or a preset never loads torch.  Each
network in ``dreamcli.models`` has one table; the engine only ever sees the
module names that ``LayerTable.resolve`` returns.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from dreamcli.config import LayerSpec
from dreamcli.errors import SettingsError, brief


def resolve_layer(name: str, module_names: Iterable[str], aliases: Mapping[str, str] | None = None) -> str:
    """Map a user's layer name to a module name of the model, or raise with suggestions.

    ``aliases`` maps extra names (Caffe's) to module names; ``-`` may stand for
    ``/`` as in ``conv2-3x3_reduce``, since ``/`` is awkward in file names; case
    does not matter (``Inception_4C``).
    """
    module_names = [n for n in module_names if n]
    aliases = aliases or {}
    if name in module_names:
        return name
    for candidate in (name, name.replace("-", "/")):
        if candidate in aliases:
            return aliases[candidate]
    folded = {n.casefold(): n for n in module_names}
    folded.update((alias.casefold(), module) for alias, module in aliases.items())
    for candidate in (name, name.replace("-", "/")):
        if candidate.casefold() in folded:
            return folded[candidate.casefold()]
    known = sorted(set(aliases) | set(module_names))
    close = difflib.get_close_matches(name.replace("-", "/"), known, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "run 'dream list layers' to see them all"
    raise SettingsError(f"unknown layer {brief(name)}: {hint}")


@dataclass(frozen=True)
class LayerTable:
    """The names of one network's layers.

    ``modules``: every module name of the built network, in forward order (what
    ``named_modules()`` gives, without the root).  ``channels``: the layers a
    user picks from, in forward order, with their output channels.  ``aliases``:
    other names for modules (e.g. Caffe's ``inception_4c/3x3_reduce``).  ``unlisted``: layers
    that are taken when named but not listed (``rows``), because a listed layer gives the same
    output under the other naming (GoogLeNet's ``inception4c.branch2`` is ``inception_4c/3x3``).
    """

    modules: tuple[str, ...]
    channels: Mapping[str, int]
    aliases: Mapping[str, str] = field(default_factory=dict)
    unlisted: frozenset[str] = frozenset()

    def resolve(self, name: str) -> str:
        """A user's layer name -> the module name in the network."""
        return resolve_layer(name, self.modules, self.aliases)

    def check(self, spec: LayerSpec) -> str:
        """``spec``'s module name, once its name and channels are known to exist (else SettingsError)."""
        module = self.resolve(spec.name)
        count = self.channels.get(module)
        if spec.channels and count is not None and max(spec.channels) >= count:
            raise SettingsError(
                f"layer {spec.name!r} has {count} channels (0-{count - 1}); "
                f"channel {max(spec.channels)} does not exist"
            )
        if spec.pick and count is not None and spec.pick[1] > count:
            raise SettingsError(
                f"layer {spec.name!r} has {count} channels: [{spec.pick[0]}:{spec.pick[1]}] asks for more; "
                f"choose at most {count}"
            )
        return module

    def rows(self) -> list[tuple[str, str, int]]:
        """(the name users know, module name, channels) for each layer a user picks from."""
        alias_for: dict[str, str] = {}
        for alias, module in self.aliases.items():
            alias_for.setdefault(module, alias)
        return [
            (alias_for.get(module, module), module, count)
            for module, count in self.channels.items()
            if module not in self.unlisted
        ]
