"""Run by torchrun in tests: one data-parallel step of the real training Step; dump grads."""

import sys

import torch
import torch.distributed as dist
from safetensors.torch import save_file

from reverie.base.model import BaseModel
from reverie.hypernet.model import HyperNetwork
from reverie.hypernet.store import build_config
from reverie.hypernet.train import HyperRecipe, Step, all_reduce_grads, sync_params
from reverie.world import World, WorldConfig

base, out = sys.argv[1], sys.argv[2]
dist.init_process_group("gloo")
rank = dist.get_rank()
torch.set_num_threads(1)
torch.manual_seed(rank)  # different initial weights: sync_params must align them
bm = BaseModel.load(base)
rc = HyperRecipe(docs_per_step=2, group_sizes=(2,), latent_dim=32, n_blocks=1, rank=4)
hyper = HyperNetwork(build_config(bm, rc.rank, rc.targets, latent_dim=32, n_blocks=1))
with torch.no_grad():
    hyper.scale.normal_()  # so every head gets a gradient
sync_params(hyper)
st = Step(bm, hyper, World(WorldConfig(seed=0, n_base=20, n_held_out=20)), rc)
d = st.data(0, rank)  # each rank reads different documents
loss, _ = st.loss(d)
loss.backward()
all_reduce_grads(hyper)
grads = {n: p.grad.detach().clone() for n, p in hyper.named_parameters()}
save_file(grads, f"{out}/grads{rank}.safetensors", metadata={"docs": "|".join(d["docs"])})
dist.destroy_process_group()
