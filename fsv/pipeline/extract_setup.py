"""From what a user asked for to an extraction job: ``fsv extract`` and ``fsv submit extract``
build an :class:`ExtractRequest` from their options, and :func:`extract_job` turns it into an
:class:`~fsv.pipeline.cluster.ExtractJob` (weights found and hashed, sampling checked against the
backbone's card, the store located by dataset and spec key).

The request's field defaults are the command-line defaults (the CLI reads them from here, so this
module imports torch only when a job is built).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

from fsv.errors import FsvInputError

if TYPE_CHECKING:
    from fsv.pipeline.cluster import ExtractJob

SAMPLING_KINDS = ("tsn", "frames", "snippets")


@dataclass(frozen=True)
class ExtractRequest:
    """The options of one extraction as given; None means "the backbone card's default".

    Data: ``dataset`` (configured by name), or ``manifest`` + ``root`` + ``store``. Model:
    ``backbone``, ``streams`` (comma-separated), ``weights`` / ``flow_weights`` (path, ``random`` or
    None for the cache), ``layer``, ``recipe`` (a published recipe of the card), ``grid`` (store the
    patch-token grid too). Sampling: ``sampling`` kind, TSN ``segments`` / ``tsn_mode``,
    snippet ``fps`` / ``snippet`` / ``stride``, ``ten_crop``; ``flow`` method and
    ``flow_quantize``. The rest is how the run goes (see :class:`~fsv.pipeline.extract.RunOptions`).
    """

    backbone: str
    dataset: str | None = None
    manifest: Path | None = None
    root: Path | None = None
    store: Path | None = None
    streams: str = "rgb"
    weights: str | None = None
    flow_weights: str | None = None
    layer: str | None = None
    recipe: str | None = None
    grid: bool = False
    sampling: str | None = None
    segments: int | None = None
    tsn_mode: str | None = None
    fps: float | None = None
    snippet: int | None = None
    stride: int | None = None
    ten_crop: bool = False
    flow: str = "tvl1"
    flow_quantize: bool = False
    device: str = "auto"
    workers: int = 1
    batch_size: int | None = None
    window: int = 256
    decoder: str = "auto"
    precision: str = "fp32"
    threads: int | None = None
    retry_failed: bool = False
    allow_manifest_change: bool = False
    redo_corrupt: bool = False
    commit_every: float = 10.0
    shard: str | None = None
    shard_by: str = "cost"


def extract_job(r: ExtractRequest) -> "ExtractJob":
    """The extraction job ``r`` describes. Raises :class:`FsvInputError` naming the option at fault."""
    from fsv.locations import locate
    from fsv.pipeline.backbones import backbone_networks, resolve_weights
    from fsv.pipeline.cluster import ExtractJob
    from fsv.pipeline.extract import RunOptions, parse_shard
    from fsv.pipeline.plan import make_recipe

    root = r.root
    if r.dataset is not None:
        root = root or locate(r.dataset).root
        if root is None:
            raise FsvInputError(
                f"no data root for {r.dataset}: run `fsv datasets set {r.dataset} --root DIR` or pass --root"
            )
        source = r.dataset
    elif r.manifest is not None and root is not None and r.store is not None:
        source = str(r.manifest)
    else:
        raise FsvInputError("give --dataset NAME, or --manifest FILE --root DIR --store DIR")
    networks = backbone_networks(r.backbone)
    streams = tuple(s.strip() for s in r.streams.split(",") if s.strip())
    refs = {}
    for s in streams:
        network = networks.get(s)
        if network is None:
            continue  # make_recipe names the stream the backbone lacks
        given = r.weights if s == "rgb" else (r.flow_weights or ("random" if r.weights == "random" else None))
        refs[s] = resolve_weights(network, given, option="--weights" if s == "rgb" else "--flow-weights")
    if r.sampling not in (None, *SAMPLING_KINDS):
        raise FsvInputError(f"--sampling must be {', '.join(SAMPLING_KINDS)}, got {r.sampling!r}")
    sampling = {
        "kind": "frames" if r.sampling == "frames" else None,
        "num_segments": r.segments,
        "mode": r.tsn_mode,
        "fps": r.fps,
        "snippet": r.snippet,
        "stride": r.stride,
    }
    recipe = make_recipe(
        r.backbone,
        streams=streams,
        weights=refs,
        sampling={k: v for k, v in sampling.items() if v is not None} or None,
        ten_crop=r.ten_crop,
        flow={"method": r.flow, "quantize": r.flow_quantize},
        layer=r.layer,
        precision=r.precision,
        recipe=r.recipe,
        grid=r.grid,
    )
    store = r.store
    if store is None:
        spec = recipe.spec()
        store = locate(r.dataset).store_path(spec.name, spec.key)
    options = RunOptions(
        device=r.device,
        workers=r.workers,
        batch_size=r.batch_size,
        window_frames=r.window,
        decoder=r.decoder,
        retry_failed=r.retry_failed,
        threads=r.threads,
        shard=parse_shard(r.shard) if r.shard else None,
        shard_by=r.shard_by,
        commit_interval_s=r.commit_every,
        allow_manifest_change=r.allow_manifest_change,
        redo_corrupt=r.redo_corrupt,
    )
    return ExtractJob(source, Path(root), Path(store), recipe, options)
