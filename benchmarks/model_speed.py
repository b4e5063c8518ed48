"""Speed of generators side by side: the bundled 480p example end to end, in one process,
each model loaded and warmed up once, rounds interleaved so background load hits all alike.

    python benchmarks/model_speed.py OLD.pt NEW.pt [--repeats 3] [--out benchmarks/model_speed.json]

Prints fps per model (median over rounds) and each model's ratio to the first.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from vidcolor.config import JobConfig  # noqa: E402
from vidcolor.model import Colorizer  # noqa: E402
from vidcolor.pipeline import LocalExecutor, run_job  # noqa: E402

log = logging.getLogger("bench")
EXAMPLE = ROOT / "examples" / "steamboat_willie_1928.mp4"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("weights", nargs="+", type=Path)
    p.add_argument("--clip", type=Path, default=EXAMPLE)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=HERE / "model_speed.json")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = JobConfig()
    models = {}
    for w in args.weights:
        c = Colorizer.from_file(w, cfg.device, cfg.precision)
        c.predict(np.zeros((cfg.batch_size, 144, 256), np.float32), pad_to=cfg.batch_size)  # warm-up
        models[str(w)] = c
    fps: dict[str, list[float]] = {k: [] for k in models}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for name, c in models.items():
                out = Path(tmp) / "out.mp4"
                t0 = time.perf_counter()
                res = run_job(args.clip, out, cfg, overwrite=True, restart=True, executor=LocalExecutor(c))
                fps[name].append(res.frames / (time.perf_counter() - t0))
                log.info("round %d %s: %.1f fps (%s precision)", r + 1, name, fps[name][-1], c.precision)
    first = statistics.median(next(iter(fps.values())))
    rows = {k: {"fps_median": statistics.median(v), "fps_all": v, "ratio_to_first": statistics.median(v) / first,
                "precision": models[k].precision, "arch": models[k].net.cfg.arch}
            for k, v in fps.items()}
    for k, v in rows.items():
        print(f"{k}: {v['fps_median']:.1f} fps ({v['arch']}, {v['precision']}), x{v['ratio_to_first']:.2f}")
    args.out.write_text(json.dumps({"clip": str(args.clip), "config": "JobConfig defaults, in-process (no Ray)",
                                    "cpu_count": os.cpu_count(), "loadavg_end": os.getloadavg(),
                                    "torch_threads": __import__("torch").get_num_threads(), "models": rows},
                                   indent=2) + "\n")


if __name__ == "__main__":
    main()
