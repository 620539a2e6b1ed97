"""State-dict key hints: when a checkpoint's keys differ from a model's only by a prefix
(``module.`` from ``torch.nn.DataParallel``, ``model.``) or by a consistent renaming of
some path components, say so and show the mapping.

:func:`key_mapping_hint` is what ``load_state_dict``'s error appends.
"""

from __future__ import annotations

from collections.abc import Iterable

_WRAPPERS = {
    "module.": "torch.nn.DataParallel / DistributedDataParallel",
    "_orig_mod.": "torch.compile",
}
_MAX_RULES = 4


def _split(key: str) -> tuple[str, ...]:
    return tuple(key.split("."))


def _rule(given: tuple[str, ...], expected: tuple[str, ...]) -> tuple[tuple, tuple]:
    """The differing middle of two keys (their common leading and trailing components
    removed): renaming the first middle to the second turns ``given`` into ``expected``."""
    head = 0
    while head < min(len(given), len(expected)) and given[head] == expected[head]:
        head += 1
    tail = 0
    while (
        tail < min(len(given), len(expected)) - head
        and given[len(given) - 1 - tail] == expected[len(expected) - 1 - tail]
    ):
        tail += 1
    return given[:head] + given[head : len(given) - tail], given[:head] + expected[
        head : len(expected) - tail
    ]


def _apply(rules: list[tuple[tuple, tuple]], key: tuple[str, ...]) -> tuple[str, ...]:
    """``key`` with the first rule whose old components start it replaced by its new ones."""
    for old, new in rules:
        if key[: len(old)] == old:
            return new + key[len(old) :]
    return key


def _by_position(given: list[str], expected: list[str]) -> list[tuple[str, str]]:
    """Pairs in order (state dicts keep the model's order), when the counts agree."""
    return list(zip(given, expected, strict=True)) if len(given) == len(expected) else []


def _by_likeness(given: list[str], expected: list[str]) -> list[tuple[str, str]]:
    """Each given key with the free expected key sharing the most leading and trailing
    components."""
    pairs, free = [], list(expected)
    for key in given:
        if not free:
            break
        g = _split(key)

        def shared(e: str, g: tuple[str, ...] = g) -> int:
            old, new = _rule(g, _split(e))
            return len(g) - len(old) + len(_split(e)) - len(new)

        best = max(free, key=shared)
        pairs.append((key, best))
        free.remove(best)
    return pairs


def _consistent_rules(
    given: list[str], expected_set: set[str], pairs: list[tuple[str, str]]
) -> list[tuple[tuple, tuple]] | None:
    """The renamings the pairs imply, if at most a few and if together they turn the given
    keys into a superset of the expected ones."""
    rules: list[tuple[tuple, tuple]] = []
    for g, e in pairs:
        rule = _rule(_split(g), _split(e))
        if len(rule[0]) == len(_split(g)):  # no shared leaf ('weight'): not a renaming
            return None
        if rule not in rules:
            rules.append(rule)
    rules.sort(key=lambda r: -len(r[0]))  # the most specific renaming first
    if not rules or len(rules) > _MAX_RULES:
        return None
    mapped = {".".join(_apply(rules, _split(k))) for k in given}
    return rules if expected_set <= mapped else None


def _dotted(parts: tuple[str, ...]) -> str:
    return ".".join(parts) + "." if parts else ""


def key_mapping_hint(expected_keys: Iterable[str], given_keys: Iterable[str]) -> str | None:
    """A sentence suggesting how to rename ``given_keys`` (a state dict's) into
    ``expected_keys`` (the model's), or ``None`` when no consistent mapping explains the
    difference.

    Detected: a prefix to strip (``module.``, ``model.``, ...), a prefix to add, and a
    consistent renaming of up to four leading paths (``fc.`` -> ``head.``,
    ``encoder.layers.`` -> ``encoder.blocks.``). The mapping must turn every key the
    model expects into one the state dict has.
    """
    expected, given = list(dict.fromkeys(expected_keys)), list(dict.fromkeys(given_keys))
    expected_set, given_set = set(expected), set(given)
    missing = [k for k in expected if k not in given_set]
    unexpected = [k for k in given if k not in expected_set]
    if not missing or not unexpected:
        return None
    rules = None
    for pairing in (_by_position, _by_likeness):
        rules = rules or _consistent_rules(given, expected_set, pairing(unexpected, missing))
    if rules is None:
        return None
    mapped = {".".join(_apply(rules, _split(k))) for k in given}
    left = len(mapped - expected_set)
    leftover = f" ({left} key(s) of the state dict still match nothing)" if left else ""
    if len(rules) == 1 and not rules[0][1]:
        prefix = _dotted(rules[0][0])
        source = f" (saved from a {_WRAPPERS[prefix]} wrapper)" if prefix in _WRAPPERS else ""
        return (
            f"the state dict's keys carry the prefix {prefix!r}{source} that the model's do "
            f"not: strip it, {{k.removeprefix({prefix!r}): v for k, v in "
            f"state_dict.items()}}{leftover}"
        )
    if len(rules) == 1 and not rules[0][0]:
        prefix = _dotted(rules[0][1])
        return (
            f"the model's keys carry the prefix {prefix!r} that the state dict's do not: add "
            f"it, {{{prefix!r} + k: v for k, v in state_dict.items()}}{leftover}"
        )
    renames = ", ".join(f"{_dotted(old)!r} -> {_dotted(new)!r}" for old, new in rules)
    example = next(k for k in unexpected if _apply(rules, _split(k)) != _split(k))
    return (
        f"the keys differ by a consistent renaming of their leading path: {renames} (e.g. "
        f"{example!r} -> {'.'.join(_apply(rules, _split(example)))!r}); rename the state "
        f"dict's keys accordingly{leftover}"
    )
