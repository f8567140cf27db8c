"""``fastmlp.nn.parallel``: data-parallel training over processes (``torch.nn.parallel``)."""
from .distributed import DistributedDataParallel, consume_prefix_in_state_dict_if_present

__all__ = ["DistributedDataParallel", "consume_prefix_in_state_dict_if_present"]
