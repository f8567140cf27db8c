"""MPI job for test_ddp.py: rank 1 raises; rank 0 would wait in its allreduce forever unless the
uncaught exception aborts the whole job."""
import numpy as np

import fastmlp.distributed as dist

dist.init_process_group()
if dist.get_rank() == 1:
    raise ValueError("rank one fails on purpose")
dist.all_reduce(np.zeros(3))
dist.barrier()
