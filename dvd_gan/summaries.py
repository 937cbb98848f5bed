"""TensorBoard and console metrics for a directory that may be on gs://.

clu's SummaryWriter writes through `tf.summary`, which reaches gs:// only through
TensorFlow's own GCS client, not the storage layer every other file takes (dvd_gan.storage).
So a remote directory's event files are written locally and copied there on every
`flush()` (the loop flushes with each checkpoint) and on `close()`.
"""

from clu import metric_writers

from dvd_gan.storage import LocalMirror


class MirroredWriter(metric_writers.MultiWriter):
    """clu's default writer (console log, and TensorBoard unless `just_logging`) whose
    event files reach `directory`, local or remote, at each flush."""

    def __init__(self, directory, just_logging: bool = False, asynchronous: bool = True):
        self.mirror = None if just_logging else LocalMirror(directory)
        writer = metric_writers.create_default_writer(
            None if just_logging else self.mirror.directory,
            just_logging=just_logging,
            asynchronous=asynchronous,
        )
        super().__init__([writer])

    def flush(self):
        super().flush()
        if self.mirror is not None:
            self.mirror.sync()

    def close(self):
        super().close()
        if self.mirror is not None:
            self.mirror.close()
