"""The embedded broker (``filesystem://``) with messages written atomically.

Kombu's filesystem transport opens a message file under its final name and then writes
it; its reader takes any file with that name. When the worker polls in between, it reads
an empty message, fails to parse it and stops with "Unrecoverable error" (seen once in CI
while the web tests submitted batches). Here each message is written under a hidden
name, which the reader skips, and renamed into place whole: a rename within one folder is
atomic, so the reader sees a whole message or none.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        """Put ``payload`` onto ``queue``, under kombu's own file naming, all at once."""
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # A leading dot: kombu's reader wants "<anything>.<queue>.msg" after the first dot.
        partial = os.path.join(self.data_folder_out, f".{name}.part")
        try:
            with open(partial, "wb") as out:
                out.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            try:
                os.unlink(partial)
            except OSError:
                pass
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
