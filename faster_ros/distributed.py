"""One process or DDP ranks, from the launcher's environment (torchrun, or srun-style env://).

Both trainers (``faster_ros.tokenizer.train``, ``faster_ros.policy.train``) read their rank, world
size and device here and tear the process group down through :meth:`Distributed.close`: every rank
waits for rank 0 to finish writing, then the group is destroyed under a watchdog, because
``destroy_process_group`` can hang on gloo after the work is done (pytorch/pytorch#75097). A rank
whose teardown outlives the watchdog prints its threads' stacks and exits 0: its outputs are
already written, and a launcher waiting forever on it helps nobody.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading

import torch
import torch.distributed as dist

TEARDOWN_TIMEOUT_S = 60.0


class Distributed:
    """Rank, world size and device of this process; a no-op for one process.

    ``device``: "cpu", "cuda" or None (CUDA when available). Under a launcher (WORLD_SIZE > 1)
    a CUDA rank takes ``cuda:LOCAL_RANK`` and NCCL, a CPU rank gloo.
    """

    def __init__(self, device: str | None = None) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        cuda = device.startswith("cuda")
        if cuda and self.world > 1:
            self.device = torch.device("cuda", self.local_rank)
        else:
            self.device = torch.device(device)
        if self.world > 1 and not dist.is_initialized():
            if cuda:
                torch.cuda.set_device(self.device)
            dist.init_process_group("nccl" if cuda else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def close(self, timeout_s: float = TEARDOWN_TIMEOUT_S) -> None:
        """Wait for every rank (rank 0 writes before it gets here), then destroy the group. A
        DDP rank's process exits (status 0) here: call it last. One process: returns."""
        if self.world == 1 or not dist.is_initialized():
            return
        dist.barrier()  # bounded by the group's own timeout; a big save can take a while
        done = threading.Event()

        def watchdog() -> None:
            if done.wait(timeout_s):
                return
            print(f"rank {self.rank}: destroy_process_group did not return in {timeout_s:.0f} s "
                  "(a known gloo/NCCL teardown hang, pytorch/pytorch#75097); this rank's work is "
                  "done and written, so it exits now. Its threads were at:",
                  file=sys.stderr, flush=True)
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)

        threading.Thread(target=watchdog, name="teardown-watchdog", daemon=True).start()
        dist.destroy_process_group()
        done.set()
        # The rank ends here, its work written: the interpreter's own exit runs gloo's C++
        # teardown again, which was seen to abort (SIGABRT) one rank of a two-rank CPU run at
        # exit while its peer never ended.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
