"""Keeping track of media: listing items, groups and sequences, and deleting them.

Mixed into :class:`voxelgate.imaging.media.library.MediaLibrary`. Deleting shares the store's
reference counting with DICOM: the object of a deleted item goes only when nothing else in the
catalog holds the same bytes (``catalog.is_referenced``), under the object's lock, so that an ingest
of the same bytes at the same moment either comes before (and the item is deleted) or after (and
the item is stored again, its object with it).

What deleting does
------------------
- **An item** (image or video): its catalog row, its link to the video it was re-encoded from,
  its object in the store (freeing its bytes), its derived-cache entries (decoded pages, frame
  index, frames, findings) and the open readers of a video. Items re-encoded *from* it stay, with
  their reports and frame maps.
- **An item that a group or sequence holds** is refused (``FAILED_PRECONDITION``, naming the sets):
  a set's frame n is what labels on the set refer to, and taking one frame out would renumber every
  later one. This is CVAT's rule (a task's frames are never renumbered; the task is deleted whole)
  rather than Orthanc's (an instance deleted from a series leaves the series shorter), because in a
  labelling platform frame numbers carry labels. Delete the sets first: they are lists, and
  deleting one keeps its items.
- **A group or sequence**: the set and its list of frames, its derived-cache entries, and its MP4
  exports (their jobs and their objects; an export still running is stopped). Its items stay.
- **A video being re-encoded**, on any replica, is refused until the re-encode ends (cancel it
  to end it sooner).
"""

from __future__ import annotations

from dataclasses import dataclass

from voxelgate.cache.derived import DerivedCache
from voxelgate.cache.media_catalog import MediaCatalog, MediaEntry, MediaQuery
from voxelgate.cache.store import Store
from voxelgate.errors import InvalidInputError, NotFoundError, PreconditionError
from voxelgate.imaging.jobs import JobRunner

from .video_library import EXPORT, REENCODE
from .video_readers import ReaderPool


@dataclass(frozen=True)
class Deleted:
    """What ``delete_media`` removed.

    Attributes
    ----------
    id, kind, name:
        The item or set (``kind``: image, video, group or sequence).
    freed_bytes:
        Bytes freed in the durable store (0 for a set, or when other catalog rows hold the same bytes).
    derived_entries:
        Derived-cache entries dropped.
    """

    id: str
    kind: str
    name: str
    freed_bytes: int
    derived_entries: int


class InventoryMixin:
    """The listing and deleting half of ``MediaLibrary`` (needs its storage, readers and re-encode jobs)."""

    store: Store
    catalog: MediaCatalog
    cache: DerivedCache
    readers: ReaderPool
    jobs: JobRunner

    def _drop_result(self, sha: str) -> None:
        raise NotImplementedError

    def list_media(self, query: MediaQuery, *, page_size: int = 0, token: str = "") -> tuple[list[MediaEntry], str]:
        """Media items, groups and sequences matching ``query``, oldest first, a page at a time (keyset paging).

        Returns the page and the next page's token (empty on the last page).

        Raises
        ------
        InvalidInputError
            A token that is malformed or belongs to another query.
        """
        return self.catalog.list_media(query, page_size=page_size, token=token)

    def delete_media(self, item_id: str) -> Deleted:
        """Delete a media item, a group or a sequence (see the module's docstring).

        Raises
        ------
        InvalidInputError
            No id given.
        NotFoundError
            Nothing has that id.
        PreconditionError
            A group or sequence holds the item (they are named), or a re-encode of it is running.
        """
        if not item_id:
            raise InvalidInputError("give the id of a media item, group or sequence")
        if self.catalog.get_media(item_id) is not None:
            return self._delete_item(item_id)
        gone = self.catalog.delete_set(item_id)
        if gone is None:
            raise NotFoundError("no such media item, group or sequence", subject=item_id)
        for sha in self.jobs.catalog.forget_jobs(EXPORT, item_id):  # its MP4 exports
            self._drop_result(sha)
        return Deleted(item_id, gone.kind, gone.name, 0, self.cache.evict_tag(item_id))

    def _delete_item(self, media_id: str) -> Deleted:
        if self.jobs.catalog.running_jobs(REENCODE, media_id):
            raise PreconditionError("a re-encode of it is running; cancel it or let it end first", subject=media_id)
        with self.store.lock(media_id):
            row = self.catalog.delete_media(media_id)
            if row is None:
                raise NotFoundError("no such media item, group or sequence", subject=media_id)
            freed = 0 if self.catalog.is_referenced(media_id) else self.store.delete(media_id)
        self.readers.forget(media_id)
        return Deleted(media_id, row.kind, row.name, freed, self.cache.evict_tag(media_id))


__all__ = ["Deleted", "InventoryMixin"]
