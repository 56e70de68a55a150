"""The pipeline's stages, one module each: a thin main() that reads, computes, writes and logs.

Importing this package caps numpy's SIMD dispatch at AVX2 for the stage's process (and the workers it starts)
before numpy is imported, so that AVX2 and AVX-512 machines compute the classic models bit for bit alike
(quest.tracking.machine.numpy_at_most_avx2 says why). A process that imported numpy already keeps its own.
Under DVC it also starts watching the stage's dvc before the stage's own imports (quest.core.interrupts.watch_dvc).
"""

import os
import sys

from quest.core import interrupts
from quest.core.host import cpuinfo
from quest.tracking.machine import numpy_at_most_avx2

interrupts.watch_dvc()  # before the stage's imports: a dvc killed during them is noticed too

if "numpy" not in sys.modules:
    numpy_at_most_avx2(os.environ, set(cpuinfo().get("flags", "").split()))
