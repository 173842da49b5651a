"""The Oasis API's file bytes, all in the storage root: portfolio uploads, checked with ods-tools on
arrival, and an analysis' results served from ``analyses/<analysis_id>/`` (tar.gz built as it streams).

Every path here is built by the server from record ids and fixed names: nothing a client sends is
ever used as a path.
"""

from __future__ import annotations

import tarfile
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from airflow.sdk import ObjectStoragePath

from oasis_ops.errors import OasisInputError
from oasis_ops.storage import Storage

#: Portfolio file sub-resource -> OED role (ods-tools' name).
PORTFOLIO_FILES = {
    "location_file": "location",
    "accounts_file": "account",
    "reinsurance_info_file": "ri_info",
    "reinsurance_scope_file": "ri_scope",
}
#: Run parameter of each portfolio file (see ``params.EXPOSURE_FILES``).
RUN_PARAMETER = {
    "location_file": "location_file",
    "accounts_file": "accounts_file",
    "reinsurance_info_file": "ri_info_file",
    "reinsurance_scope_file": "ri_scope_file",
}
_CHUNK = 1024 * 1024


def portfolio_folder(storage: Storage, portfolio_id: int) -> ObjectStoragePath:
    return storage.root / "oasis-api" / "portfolios" / str(portfolio_id)


def save_upload(storage: Storage, portfolio_id: int, resource: str, filename: str, body: IO[bytes]) -> str:
    """Stream an upload to a local temp file, check it with ods-tools, then publish it; returns its
    storage path (relative to the root). Raises :class:`OasisInputError` naming the file and the problem,
    and then nothing is stored."""
    suffix = PurePosixPath(filename or "").suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise OasisInputError(f"{resource}: {filename!r} must be an OED .csv or .parquet file")
    role = PORTFOLIO_FILES[resource]
    with tempfile.TemporaryDirectory(prefix="oasis-upload-") as temp:
        local = Path(temp) / resource / f"{role}{suffix}"
        local.parent.mkdir()
        with local.open("wb") as out:
            while chunk := body.read(_CHUNK):
                out.write(chunk)
        check_oed_upload(local, role, resource, filename)
        target = portfolio_folder(storage, portfolio_id) / resource
        storage.publish(local.parent, target)
    return f"oasis-api/portfolios/{portfolio_id}/{resource}/{role}{suffix}"


def check_oed_upload(path: Path, role: str, resource: str, filename: str) -> None:
    """The first task's checks of an exposure file (kind, content), then ods-tools' OED validation."""
    from ods_tools.oed import OdsException, OedExposure

    from oasis_ops.execution.validation import check_exposure_file

    check_exposure_file(ObjectStoragePath("file://" + str(path)), resource, label=filename)
    try:
        if role in ("location", "account"):
            OedExposure(**{role: str(path)}, check_oed=True)
        else:
            _check_reinsurance_file(path, role)
    except (OdsException, ValueError, KeyError) as exc:
        problem = str(exc).replace(str(path), filename)  # the server's temp path means nothing to the client
        raise OasisInputError(f"{resource}: {filename!r} is not a valid OED {role} file: {problem}") from None


def _check_reinsurance_file(path: Path, role: str) -> None:
    """ods-tools' checks of a reinsurance file on its own: OedExposure's own check wants a location or
    account file and the class of business they imply, so the file must pass them for some class of
    business (the error is property's), all but the checks across files."""
    from ods_tools.oed import OdsException, OedExposure
    from ods_tools.oed.common import CLASS_OF_BUSINESSES, DEFAULT_VALIDATION_CONFIG
    from ods_tools.oed.validator import Validator

    exposure = OedExposure(**{role: str(path)})
    checks = [check for check in DEFAULT_VALIDATION_CONFIG if check["name"] != "source_coherence"]
    errors = []
    for class_of_business in CLASS_OF_BUSINESSES:
        exposure.class_of_business = class_of_business
        try:
            Validator(exposure)(checks)
            return
        except OdsException as exc:
            errors.append(exc)
    raise errors[0]


def stream_file(path: ObjectStoragePath) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            yield chunk


def stream_tar(folder: ObjectStoragePath, arcname: str) -> Iterator[bytes]:
    """``folder`` as a tar.gz whose members are under ``arcname/``, produced while it is sent: a
    thread writes the archive into a pipe that the response reads, so nothing is held whole."""
    reader, writer = _pipe()

    def write() -> None:
        try:
            with tarfile.open(fileobj=writer, mode="w|gz") as tar:
                for item in sorted(folder.rglob("*"), key=str):
                    if item.is_file():
                        relative = str(item.relative_to(folder))
                        info = tarfile.TarInfo(f"{arcname}/{relative}")
                        info.size = item.stat().st_size
                        with item.open("rb") as handle:
                            tar.addfile(info, handle)
        finally:
            writer.close()

    threading.Thread(target=write, daemon=True, name="oasis-tar").start()
    while chunk := reader.read(_CHUNK):
        yield chunk
    reader.close()


def tar_members(folder: ObjectStoragePath, arcname: str) -> list[str]:
    return sorted(f"{arcname}/{item.relative_to(folder)}" for item in folder.rglob("*") if item.is_file())


def tar_member(folder: ObjectStoragePath, arcname: str, member: str) -> ObjectStoragePath | None:
    """The file a member name of :func:`tar_members` stands for; None for any other name."""
    return folder / member[len(arcname) + 1 :] if member in tar_members(folder, arcname) else None


def _pipe() -> tuple[IO[bytes], IO[bytes]]:
    import os

    read_fd, write_fd = os.pipe()
    return open(read_fd, "rb", buffering=_CHUNK), open(write_fd, "wb", buffering=_CHUNK)
