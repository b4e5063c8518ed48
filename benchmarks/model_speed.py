"""Speed of generators side by side: the bundled 480p example end to end, in one process,
each model loaded and warmed up once, rounds interleaved so background load hits all alike.

    python benchmarks/model_speed.py OLD.pt NEW.pt [--repeats 3] [--guided] [--second-scales 0 2]
        [--out benchmarks/model_speed.json]

Prints fps per model (median over rounds) and each model's ratio to the first. `--guided` also
runs each guide-taking model with every shot guided by a whole coloured keyframe (the model's
own colours, from `vidcolor keyframes`): the heaviest guide, flow to the keyframe and the hint
spreading on every frame, guide loading (the shot scan) included. `--reference PHOTO`: each
guide-taking model with a reference photo matched to every frame (features of every frame).
`--second-scales`: each model at each of these `second_scale` settings (default: the config's).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
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
from vidcolor.guide import AUTO_SUFFIX  # noqa: E402
from vidcolor.keyframes import write_keyframes  # noqa: E402
from vidcolor.model import Colorizer  # noqa: E402
from vidcolor.pipeline import LocalExecutor, run_job  # noqa: E402

log = logging.getLogger("bench")
EXAMPLE = ROOT / "examples" / "steamboat_willie_1928.mp4"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("weights", nargs="+", type=Path)
    p.add_argument("--clip", type=Path, default=EXAMPLE)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--guided", action="store_true", help="also time guided runs (every shot guided)")
    p.add_argument("--reference", type=Path, help="also time runs with this reference photo (or folder)")
    p.add_argument("--second-scales", type=float, nargs="+", help="time each model at each second_scale")
    p.add_argument("--out", type=Path, default=HERE / "model_speed.json")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = JobConfig()
    models = {}
    for w in args.weights:
        c = Colorizer.from_file(w, cfg.device, cfg.precision, backend=cfg.backend)
        c.predict(np.zeros((cfg.batch_size, 144, 256), np.float32), pad_to=cfg.batch_size)  # warm-up
        models[str(w)] = c
    with tempfile.TemporaryDirectory() as tmp:
        runs: dict[str, tuple[Colorizer, JobConfig]]
        if args.second_scales:
            runs = {f"{k} second_scale={s:g}": (c, dataclasses.replace(cfg, second_scale=s))
                    for k, c in models.items() for s in args.second_scales}
        else:
            runs = {k: (c, cfg) for k, c in models.items()}
        if args.guided or args.reference:
            for name, c in models.items():
                if c.takes_guide and args.guided:
                    keys = Path(tmp) / f"keys{len(runs)}"
                    for grey in write_keyframes(args.clip, keys, cfg, c):  # the user "colours" each
                        shutil.copyfile(grey.with_name(grey.stem + AUTO_SUFFIX), grey)
                    runs[f"{name} guided"] = (c, dataclasses.replace(cfg, guide=str(keys)))
                if c.takes_guide and args.reference:
                    runs[f"{name} reference"] = (c, dataclasses.replace(cfg, reference=str(args.reference)))
        fps: dict[str, list[float]] = {k: [] for k in runs}
        for r in range(args.repeats):
            for name, (c, run_cfg) in runs.items():
                out = Path(tmp) / "out.mp4"
                t0 = time.perf_counter()
                res = run_job(args.clip, out, run_cfg, overwrite=True, restart=True, executor=LocalExecutor(c))
                fps[name].append(res.frames / (time.perf_counter() - t0))
                log.info("round %d %s: %.1f fps (%s precision)", r + 1, name, fps[name][-1], c.precision)
    first = statistics.median(next(iter(fps.values())))
    rows = {k: {"fps_median": statistics.median(v), "fps_all": v, "ratio_to_first": statistics.median(v) / first,
                "precision": runs[k][0].precision, "arch": runs[k][0].net.cfg.arch}
            for k, v in fps.items()}
    for k, v in rows.items():
        print(f"{k}: {v['fps_median']:.1f} fps ({v['arch']}, {v['precision']}), x{v['ratio_to_first']:.2f}")
    args.out.write_text(json.dumps({"clip": str(args.clip), "config": "JobConfig defaults, in-process (no Ray)",
                                    "cpu_count": os.cpu_count(), "loadavg_end": os.getloadavg(),
                                    "torch_threads": __import__("torch").get_num_threads(), "models": rows},
                                   indent=2) + "\n")


if __name__ == "__main__":
    main()
