"""Name the machine benchmark figures come from (imported by every bench script; run them from the repo root)."""
from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path


def machine(device: str = "cpu") -> dict:
    """Platform, CPU, GPU, threads, library versions, date and the load average when the run started."""
    import librosa
    import numpy as np
    import soundfile as sf
    import torch

    cpu = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                    if line.startswith("model name")), cpu)
    gpu = torch.cuda.get_device_name(0) if str(device).startswith("cuda") and torch.cuda.is_available() else None
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
            "cpu_count": os.cpu_count(), "gpu": gpu, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "numpy": np.__version__, "librosa": librosa.__version__, "soundfile": sf.__version__,
            "libsndfile": sf.__libsndfile_version__, "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
