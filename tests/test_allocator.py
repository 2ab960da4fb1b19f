import json
import os
import subprocess
import sys

import pytest

# a child process that allocates and frees a 64 MiB tensor 20 times (after ten) and reports its page faults
_CHILD = """
import json, resource, sys
import torch
from tcupgan.allocator import reuse_freed_memory
in_effect = reuse_freed_memory() if sys.argv[1] == "reuse" else False
for _ in range(10):  # glibc settles where it keeps the block within a few rounds
    torch.ones(2**24).sum()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    torch.ones(2**24).sum()  # 64 MiB: over glibc's mmap threshold
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"in_effect": in_effect, "faults": faults}))
"""


def _child(mode: str, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env
    out = subprocess.run([sys.executable, "-c", _CHILD, mode], env=environ, capture_output=True, text=True,
                         check=True)  # fmt: skip
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings: Linux only")
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    pages = 2**26 // 4096  # one 64 MiB tensor's pages
    default, reused = _child("default"), _child("reuse")
    assert default["faults"] >= 20 * pages * 0.9  # glibc's default: every allocation faults its pages in
    # kept: the pages are already there (locally every round; a CI machine's glibc took a few more rounds)
    assert reused["in_effect"] and reused["faults"] < 10 * pages
    # glibc's own variables set by the user stand: nothing changes
    theirs = _child("reuse", MALLOC_MMAP_MAX_="65536")
    assert not theirs["in_effect"] and theirs["faults"] >= 20 * pages * 0.9
