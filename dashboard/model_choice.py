"""Which registered version the playground shows: pure helpers over the registry listing (no Streamlit).

A choice is a model name and a ref, as the selectors show it: `@champion` (an alias) or `v3`.
The URL keeps the plain form (`ref=champion`, `ref=3`).
"""
from __future__ import annotations

from pipeline.serving import registry


def ref_options(versions: list, name: str) -> list[str]:
    """The refs of model `name`: its aliases (champion, challenger first), then its versions, newest first."""
    mine = [v for v in versions if v.name == name and v.status == "READY"]
    rank = {registry.CHAMPION: 0, registry.CHALLENGER: 1}
    aliases = sorted({a for v in mine for a in v.aliases}, key=lambda a: (rank.get(a, 2), a))
    return [f"@{a}" for a in aliases] + [f"v{v.version}" for v in mine]


def normal_ref(ref: str) -> str:
    """The selector's form of a URL ref: `3` or `v3` -> `v3`; `champion` or `@champion` -> `@champion`."""
    ref = ref.strip()
    if ref.startswith("@") or (ref[:1] == "v" and ref[1:].isdigit()):
        return ref
    return f"v{ref}" if ref.isdigit() else f"@{ref}"


def plain_ref(ref: str) -> str:
    """The URL's form of a selector ref: `v3` -> `3`, `@champion` -> `champion`."""
    return ref[1:]


def resolve(versions: list, name: str, ref: str):
    """The ModelVersionInfo a selector ref of model `name` points to."""
    mine = [v for v in versions if v.name == name]
    if ref.startswith("@"):
        return next(v for v in mine if ref[1:] in v.aliases)
    return next(v for v in mine if v.version == int(ref[1:]))


def default_b(versions: list, a) -> tuple[str, str]:
    """What to compare version `a` against: the challenger, else the next newest version, else another model."""
    same = [v for v in versions if v.name == a.name and v.status == "READY"]
    if any(registry.CHALLENGER in v.aliases for v in same) and registry.CHALLENGER not in a.aliases:
        return a.name, f"@{registry.CHALLENGER}"
    others = [v for v in same if v.version != a.version] or [v for v in versions if v.name != a.name]
    return (others[0].name, f"v{others[0].version}") if others else (a.name, f"v{a.version}")


def describe(preprocessing, version) -> str:
    """One line on what a model takes: architecture, dataset, input, normalization, classes, source run."""
    pre = preprocessing
    stats = ", ".join(f"{m:.3f}/{s:.3f}" for m, s in zip(pre.mean, pre.std))
    return (f"{pre.model or version.architecture} on {pre.dataset or version.dataset} · input "
            f"{'grayscale' if pre.channels == 1 else 'RGB'} {pre.image_size[1]}×{pre.image_size[0]}, "
            f"mean/std {stats} · {len(pre.classes)} classes · [source run](run_detail?run={version.run_id})")
