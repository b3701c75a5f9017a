"""``packhouse import DIR``: copy a folder of wheels and sdists (flat or nested, e.g. an old
pypiserver folder) into the index, reading each archive's metadata; broken archives are reported
and skipped. The upload time of each file is its mtime."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from app.commands._server import ConfigError, build_settings, fail, open_database, open_storage
from app.settings import Settings


def progress_bar(done: int, total: int, name: str, width: int = 30) -> None:
    filled = width * done // max(total, 1)
    line = f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {name[:50]:<50}"
    print(line, end="" if done < total else "\n", file=sys.stderr, flush=True)


async def _import(settings: Settings, source: Path, show_progress: bool) -> int:
    from app.db.engine import build_sessionmaker
    from app.services.scan import FolderIndexer
    from app.services.upload import new_storage_key
    from app.storage.flat import FlatLocalStorage

    engine = await open_database(settings.effective_database_url)  # created, as the server would
    try:
        # The server's storage: files folder, package folder or S3.
        storage, close_storage = await open_storage(settings, check=True)
        try:
            flat = isinstance(storage, FlatLocalStorage)
            indexer = FolderIndexer(build_sessionmaker(engine), storage, exclusive_names=flat)
            if isinstance(storage, FlatLocalStorage) and source == storage.root:
                progress = progress_bar if show_progress else None
                report = await indexer.sync_in_place([storage.root], progress, settle=False)
            else:

                def key_for(sha: str, filename: str, _rel: str) -> str:
                    return filename if flat else new_storage_key(sha, filename)

                report = await indexer.import_folder(source, key_for, progress_bar if show_progress else None)
        finally:
            await close_storage()
    finally:
        await engine.dispose()
    print(
        f"imported {len(report.added)} file(s); {len(report.duplicates)} already in the index; "
        f"{len(report.broken)} broken (skipped); {len(report.skipped)} of other types (skipped)",
        file=sys.stderr,
    )
    for path, why in [*report.broken, *report.skipped]:
        print(f"  skipped {path}: {why}", file=sys.stderr)
    return 0


def handle(args: argparse.Namespace) -> int:
    source = Path(args.directory)
    if not source.is_dir():
        return fail(f"{source} is not a directory")
    flags = {
        "data_dir": args.data_dir,
        "packages_dir": args.packages_dir,
        "database_url": args.database_url,
        "storage": args.storage,
    }
    try:
        settings = build_settings(flags, args.config)
        return asyncio.run(_import(settings, source.resolve(), not args.quiet))
    except ConfigError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        # The files copied so far are in the index; the same command skips them and goes on.
        end_bar = "" if args.quiet else "\n"
        print(f"{end_bar}packhouse: interrupted; run the same import again to resume", file=sys.stderr)
        return 130


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "import",
        help="import a folder of wheels and sdists into the index",
        description="Copy every .whl, .tar.gz and .zip (and old .tgz or .tar.bz2 sdist) under DIRECTORY into "
        "the index (of 'serve' with --data-dir, or of 'run' with --packages-dir), with a progress bar. Archives "
        "already indexed are skipped; broken ones and other files (.egg) are reported and skipped.",
    )
    p.add_argument("directory", metavar="DIRECTORY")
    p.add_argument("--data-dir", help="the data folder of 'packhouse serve' (env PACKHOUSE_DATA_DIR)")
    p.add_argument("--packages-dir", help="the package folder of 'packhouse run' (env PACKHOUSE_PACKAGES_DIR)")
    p.add_argument("--database-url", help="SQLAlchemy async URL (env PACKHOUSE_DATABASE_URL)")
    p.add_argument("--storage", help="s3://BUCKET/PREFIX when the server stores files in S3 (env PACKHOUSE_STORAGE)")
    p.add_argument("--config", metavar="FILE", help="TOML settings file (env PACKHOUSE_CONFIG)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=handle)
