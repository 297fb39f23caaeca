"""``fsv store verify``: check every committed video against its data and report what is wrong."""

from __future__ import annotations

from dataclasses import dataclass, field

from fsv.errors import FsvError
from fsv.pipeline.store.layout import JOURNAL, PARTS_DIR, SPANS, rows_crc32
from fsv.pipeline.store.store import FeatureStore
from fsv.progress import make_progress


@dataclass
class VerifyReport:
    """Problems found (each names the part, video, rows and field), plus counts: ``checked``
    distinct committed videos, ``commits`` journal entries checked (more when a video was
    committed twice, e.g. by two overlapping submissions; the latest commit is the one read).
    A damaged commit that a later intact one supersedes (a repair) is a note, not a problem."""

    checked: int = 0
    commits: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    damaged: set[str] = field(default_factory=set)  # videos whose read (latest) commit is damaged

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_store(store: FeatureStore) -> VerifyReport:
    """Read every journal entry of every part (superseded ones too) and compare its rows' CRC-32
    with the one committed; also report unparsable journal lines, rows outside the arrays,
    overlapping entries and leftovers of interrupted writes (``*.partial`` files, torn journal
    tails), which are harmless but listed."""
    report = VerifyReport()
    fields = list(store.spec.fields)
    journals = store.journals()
    total = sum(len(j.entries) for j in journals.values())
    with make_progress() as progress:
        bar_id = progress.add_task("verify", total=total, unit="videos")
        for part, journal in journals.items():
            where = f"{store.path / PARTS_DIR / part / JOURNAL}"
            for line, why in journal.bad_lines:
                report.problems.append(f"{where}:{line}: unreadable journal line ({why})")
            if journal.torn_tail:
                report.notes.append(
                    f"{where}: ends with a torn line (an interrupted commit; its video was not committed)"
                )
            sizes = {}
            for name in [*fields, SPANS]:
                try:
                    sizes[name] = store.array(part, name).shape[0]
                except (FileNotFoundError, KeyError, ValueError) as e:
                    report.problems.append(f"part {part}: array {name!r} cannot be opened ({type(e).__name__}: {e})")
            claimed: list[tuple[int, int, str]] = []
            for e in journal.entries:
                progress.advance(bar_id)
                if e.status != "ok":
                    continue
                report.commits += 1
                rows = f"rows [{e.offset}, {e.offset + e.length})"
                claimed.append((e.offset, e.offset + e.length, e.video_id))
                for name in fields:
                    if name not in sizes:
                        continue
                    if e.offset < 0 or e.length <= 0 or e.offset + e.length > sizes[name]:
                        report.damaged.add(e.video_id)
                        report.problems.append(
                            f"part {part}, video {e.video_id!r}: {rows} outside array {name!r} of {sizes[name]} rows"
                        )
                        continue
                    try:
                        data = store.read_range(part, name, e.offset, e.offset + e.length)
                    except (FsvError, OSError, ValueError, RuntimeError) as err:
                        report.damaged.add(e.video_id)
                        report.problems.append(
                            f"part {part}, video {e.video_id!r}, field {name!r}, {rows}: unreadable ({err})"
                        )
                        continue
                    want = e.crc32.get(name)
                    got = rows_crc32(data)
                    if want is None:
                        report.problems.append(
                            f"part {part}, video {e.video_id!r}: no checksum for field {name!r} in the journal"
                        )
                    elif got != want:
                        missing = [
                            str(f) for f in store.row_files(part, name, e.offset, e.offset + e.length) if not f.exists()
                        ]
                        why = (
                            f"file(s) {', '.join(missing)} missing"
                            if missing
                            else f"checksum mismatch (stored {want:#010x}, data {got:#010x})"
                        )
                        if store.index.get(e.video_id) is not e:  # a later commit is the one read
                            report.notes.append(
                                f"part {part}, video {e.video_id!r}, field {name!r}, {rows}: {why}; "
                                f"superseded by its commit in part {store.index[e.video_id].part}"
                            )
                        else:
                            report.damaged.add(e.video_id)
                            report.problems.append(
                                f"part {part}, video {e.video_id!r}, field {name!r}, {rows}: {why}; the data is damaged: "
                                "repair it with the same `fsv extract` command and --redo-corrupt (imported features: `fsv store import ... --overwrite`)"
                            )
            claimed.sort()
            for (a0, a1, va), (b0, b1, vb) in zip(claimed, claimed[1:]):
                if b0 < a1:
                    report.problems.append(
                        f"part {part}: videos {va!r} and {vb!r} claim overlapping rows [{b0}, {min(a1, b1)})"
                    )
            partials = sorted(p.name for p in (store.path / PARTS_DIR / part).rglob("*.partial"))
            if partials:
                report.notes.append(
                    f"part {part}: {len(partials)} leftover *.partial file(s) from an interrupted write"
                )
    commits: dict[str, list[str]] = {}
    for part, journal in journals.items():
        for e in journal.entries:
            if e.status == "ok":
                commits.setdefault(e.video_id, []).append(part)
    report.checked = len(commits)
    twice = {v: parts for v, parts in commits.items() if len(parts) > 1}
    for v, parts in sorted(twice.items())[:20]:
        report.notes.append(
            f"video {v!r} is committed {len(parts)} times (parts {', '.join(parts)}); reads use the latest, part {store.index[v].part}"
        )
    if len(twice) > 20:
        report.notes.append(f"... {len(twice) - 20} more videos are committed more than once")
    if twice:
        report.notes.append(
            f"{len(twice)} duplicate commit(s), from overlapping runs or submissions; harmless (the copies are checked too)"
        )
    return report
