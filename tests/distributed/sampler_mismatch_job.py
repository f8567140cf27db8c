"""MPI job for test_ddp.py: the ranks sample data sets of different lengths; both must raise."""
import fastmlp.distributed as dist
from fastmlp.utils.data import DistributedSampler

dist.init_process_group()
DistributedSampler(range(10 + dist.get_rank()))
