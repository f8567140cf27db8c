"""MPI job for test_ddp.py: rank 1 raises in the middle of fit's first epoch, while the processes
share their parameters and update them in chunks; rank 0 would wait in its next step forever
unless the uncaught exception aborts the whole job."""
import fastmlp
import fastmlp.distributed as dist
from fastmlp import nn
from fastmlp.nn.parallel import DistributedDataParallel
from fastmlp.train import fit
from fastmlp.utils.data import DataLoader, TensorDataset

import ddp_common as C

dist.init_process_group()
rank = dist.get_rank()
x, y = C.data()
dataset = TensorDataset(fastmlp.from_numpy(x), fastmlp.from_numpy(y))
model = DistributedDataParallel(C.model())
opt = C.optimizer("adam", model.parameters())
loader = DataLoader(dataset, batch_size=C.BATCH, sampler=C.sampler(dataset, rank))


class Failing:
    def __iter__(self):
        for k, batch in enumerate(loader):
            if rank == 1 and k == 2:
                assert model._sharded is not None and model._sharded.active
                raise ValueError("rank one fails inside fit on purpose")
            yield batch

    def __len__(self):
        return len(loader)


fit(model, nn.CrossEntropyLoss(), opt, Failing(), epochs=2, progress=False)
