"""The command line's progress bar (not a command module itself): a tqdm bar on stderr driven by
the ``progress(done, total, message)`` callbacks every long job takes."""

from __future__ import annotations

import sys

from tqdm import tqdm


class ProgressBar:
    """A tqdm bar on stderr fed by ``progress(done, total, message)``: a new total (the next
    phase of a job) or a step back starts a new bar; the message shows after the count."""

    def __init__(self, desc: str, unit: str = "step"):
        self.desc = desc
        self.unit = unit
        self.bar = None
        self.last_msg = None

    def __call__(self, done: int, total: int, message: str = "") -> None:
        if self.bar is None or self.bar.total != total or done < self.bar.n:
            if self.bar is not None:
                self.bar.close()
            self.bar = tqdm(total=total, desc=self.desc, unit=self.unit, file=sys.stderr, leave=False)
        self.bar.update(done - self.bar.n)
        if message and message != self.last_msg:
            self.bar.set_postfix_str(message[:60])
            self.last_msg = message

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
