"""MPI job for test_ddp.py: rank 1 builds a wider model; DDP must raise on both ranks, not hang."""
import fastmlp.distributed as dist
from fastmlp import nn
from fastmlp.nn.parallel import DistributedDataParallel

dist.init_process_group()
width = 8 if dist.get_rank() == 0 else 9
DistributedDataParallel(nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 2)))
