"""N-way K-shot episodes over a manifest split: a seeded sampler and fixed episode files.

Episode ``i`` of a sampler depends only on ``(seed, i)``, so training can resume mid-run and any
episode can be rebuilt. Validation and test episodes are written once to an episode file (JSON
lines of video ids, with a header naming the manifest hash and the sampling) and read back by every
head, so all heads are scored on exactly the same episodes.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fsv.files import write_text_atomic
from fsv.errors import FsvInputError
from fsv.pipeline.manifests import Manifest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Episode:
    """``way`` classes; ``support`` holds ``way * shot`` video ids class by class (class ``c``'s
    shots at ``c*shot : (c+1)*shot``), ``query`` ``way * query`` ids likewise."""

    classes: tuple[str, ...]
    support: tuple[str, ...]
    query: tuple[str, ...]

    def labels(self, shot: int, query: int) -> tuple[np.ndarray, np.ndarray]:
        """Support labels ``[way*shot]`` and query labels ``[way*query]`` (int64, ``0..way-1``)."""
        way = len(self.classes)
        return np.repeat(np.arange(way), shot), np.repeat(np.arange(way), query)


@dataclass(frozen=True)
class EpisodeConfig:
    """What an episode set is: split, N-way, K-shot, queries per class, seed."""

    split: str
    way: int = 5
    shot: int = 5
    query: int = 5
    seed: int = 0

    def slug(self, count: int) -> str:
        return f"{self.split}-{self.way}way-{self.shot}shot-{self.query}query-seed{self.seed}-n{count}"


def videos_by_class(manifest: Manifest, split: str, available: set[str] | None = None) -> dict[str, list[str]]:
    """Video ids of ``split`` per class (first label of multi-label rows), in manifest order;
    ``available`` (e.g. the store's ids) filters out videos without features."""
    out: dict[str, list[str]] = {}
    for r in manifest.select(split):
        if available is not None and r.video_id not in available:
            continue
        out.setdefault(r.label.split("|")[0], []).append(r.video_id)
    return out


class EpisodeSampler:
    """Samples episodes from ``classes`` (class -> video ids); classes with fewer than
    ``shot + query`` videos are left out (logged)."""

    def __init__(self, classes: dict[str, list[str]], config: EpisodeConfig) -> None:
        need = config.shot + config.query
        small = sorted(c for c, v in classes.items() if len(v) < need)
        if small:
            log.warning(
                "%d class(es) of %s have fewer than %d videos and are left out: %s",
                len(small),
                config.split,
                need,
                ", ".join(small[:5]),
            )
        self.classes = {c: list(v) for c, v in sorted(classes.items()) if len(v) >= need}
        self.names = sorted(self.classes)
        self.config = config
        if len(self.names) < config.way:
            sizes = sorted((len(v) for v in classes.values()), reverse=True)
            raise FsvInputError(
                f"split {config.split!r} has {len(self.names)} class(es) with at least {need} videos ({config.shot} shot + {config.query} query); "
                f"a {config.way}-way episode needs {config.way} (its {len(classes)} class(es) have {', '.join(map(str, sizes[:8]))}"
                f"{'...' if len(sizes) > 8 else ''} videos with features). Lower --way, --shot or the queries per class (--set query=N), or extract more videos"
            )

    def episode(self, index: int) -> Episode:
        """Episode ``index`` (a pure function of the seed and ``index``)."""
        c = self.config
        rng = np.random.default_rng([c.seed, index])
        chosen = [self.names[i] for i in rng.choice(len(self.names), c.way, replace=False)]
        support: list[str] = []
        query: list[str] = []
        for name in chosen:
            vids = self.classes[name]
            pick = rng.choice(len(vids), c.shot + c.query, replace=False)
            support += [vids[i] for i in pick[: c.shot]]
            query += [vids[i] for i in pick[c.shot :]]
        return Episode(tuple(chosen), tuple(support), tuple(query))

    def __iter__(self) -> Iterator[Episode]:
        i = 0
        while True:
            yield self.episode(i)
            i += 1


def write_episodes(path: Path, episodes: Sequence[Episode], config: EpisodeConfig, manifest_sha256: str) -> None:
    """Write an episode file atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"fsv_episodes": 1, "manifest_sha256": manifest_sha256, **config.__dict__, "count": len(episodes)}
    lines = [header, *({"classes": e.classes, "support": e.support, "query": e.query} for e in episodes)]
    write_text_atomic(path, "".join(json.dumps(line) + "\n" for line in lines))


def read_episodes(path: Path) -> tuple[dict, list[Episode]]:
    """Header and episodes of an episode file; malformed lines are reported with their number."""
    episodes = []
    with open(path, encoding="utf-8") as f:
        try:
            header = json.loads(f.readline())
            if header.get("fsv_episodes") != 1:
                raise ValueError("not an fsv episode file")
        except ValueError as e:
            raise FsvInputError(f"{path}:1: bad episode file header ({e})") from e
        for n, line in enumerate(f, start=2):
            try:
                d = json.loads(line)
                episodes.append(Episode(tuple(d["classes"]), tuple(d["support"]), tuple(d["query"])))
            except (ValueError, KeyError, TypeError) as e:
                raise FsvInputError(f"{path}:{n}: malformed episode ({e}); delete the file to have it rebuilt") from e
    return header, episodes


def episodes_dir() -> Path:
    """Where fixed episode files live: ``$FSV_EPISODES`` or ``~/.cache/fsv/episodes``."""
    return Path(os.environ.get("FSV_EPISODES", Path.home() / ".cache" / "fsv" / "episodes"))


def fixed_episodes(
    manifest: Manifest,
    config: EpisodeConfig,
    count: int,
    *,
    available: set[str] | None = None,
    folder: Path | None = None,
) -> tuple[Path, list[Episode]]:
    """The fixed episode set for ``manifest`` and ``config``: read from its file when present (the
    manifest hash must match), else sampled once and written. Returns (file, episodes)."""
    folder = folder or episodes_dir()
    path = folder / f"{manifest.dataset}-{manifest.sha256[:12]}-{config.slug(count)}.jsonl"
    if path.is_file():
        header, episodes = read_episodes(path)
        if header.get("manifest_sha256") != manifest.sha256:
            raise FsvInputError(
                f"{path}: built for another manifest (sha256 {header.get('manifest_sha256')}); delete it to rebuild"
            )
        missing = {v for e in episodes for v in e.support + e.query} - (available if available is not None else set())
        if available is not None and missing:
            raise FsvInputError(
                f"{path}: {len(missing)} episode videos have no features (e.g. {sorted(missing)[:3]}); extract them first"
            )
        return path, episodes
    sampler = EpisodeSampler(videos_by_class(manifest, config.split, available), config)
    episodes = [sampler.episode(i) for i in range(count)]
    write_episodes(path, episodes, config, manifest.sha256)
    log.info("wrote %d %s episodes to %s", count, config.split, path)
    return path, episodes
