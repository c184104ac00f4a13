"""cmi-synthesize: synthesis rounds only (CMI or DeepInversion, no student), the pool exported as an
.npz (and PNGs) for a pre-inverted warm start (`kd.init_pool`). Resumes at round boundaries."""
from __future__ import annotations

import math
import time
from pathlib import Path

from tenfold import checkpoint, plot, runtime, signals
from tenfold import config as config_mod
from tenfold.errors import CheckpointError, NonFiniteLossError
from tenfold.meters import MetricLogger, progress, write_json

from .augment import Normalizer
from .config import SynthesizeConfig
from .data import load_teacher_cfg
from .pool import ImagePool
from .train import make_synthesizer

KIND = "cmi-synthesize"


def synthesize(cfg: SynthesizeConfig, resume=None, stop_after_round: int | None = None) -> dict:
    device = runtime.select_device(cfg.device)
    runtime.set_deterministic(cfg.deterministic)
    runtime.seed_everything(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    config_mod.save(cfg, out / "config.yaml")
    norm = Normalizer(cfg.data.mean, cfg.data.std)
    teacher, arch, ncls = load_teacher_cfg(cfg.teacher, cfg.data_root, device)
    synth = make_synthesizer(cfg.method, teacher, None, ncls, cfg.synth, norm, device, cfg.data.image_size, arch,
                             cfg.precision)
    pool = ImagePool(quantize=True)
    ckpt = out / "last.pt"
    start, seconds = 0, 0.0
    if resume:
        path = ckpt if str(resume) == "auto" else Path(resume)
        if str(resume) != "auto" or ckpt.is_file():
            ck = checkpoint.load(path, kind=KIND)
            try:
                synth.load_state_dict(ck["synth"])
            except (RuntimeError, KeyError, ValueError) as e:
                raise CheckpointError(f"{path}: cannot restore the synthesizer ({str(e).splitlines()[0]})") from None
            pool.load_state_dict(ck["pool"])
            start, seconds = ck["round"], ck["seconds"]
            runtime.set_rng_state(ck["rng"])
    logger = MetricLogger(out)
    if resume:
        logger.truncate_after(start)  # records after the checkpoint (a run killed mid-round) are logged again
    end = cfg.rounds if stop_after_round is None else min(cfg.rounds, stop_after_round)
    bar = progress(total=cfg.rounds, initial=start, desc=f"cmi-synthesize[{cfg.method}]")
    # every round ends with a checkpoint: on SIGTERM/SIGUSR1 the run stops after the current round's save
    for r in signals.steps(range(start, end), lambda r: ckpt, lambda r: f"round {r + 1}/{cfg.rounds}"):
        t0 = time.perf_counter()
        res = synth.synthesize()
        seconds += time.perf_counter() - t0
        if not math.isfinite(res["syn_loss"]):
            raise NonFiniteLossError(f"synthesis loss became {res['syn_loss']} in round {r + 1}; lower synth.lr_g")
        pool.add(res["images"])
        logger.log(r + 1, pool=len(pool), **{k: v for k, v in res.items() if k.startswith("syn_")})
        checkpoint.save(ckpt, {"round": r + 1, "seconds": seconds, "synth": synth.state_dict(),
                               "pool": pool.state_dict(), "rng": runtime.rng_state()}, kind=KIND)
        bar.update(1)
    bar.close()
    if end < cfg.rounds:
        return {"round": end}
    path = pool.export(out / "pool.npz", out / "images" if cfg.png else None)
    plot.save_grid(pool.tensor()[-64:], out / "synthetic_grid.png", nrow=8)
    summary = {"method": cfg.method, "images": len(pool), "pool": str(path), "synth_seconds": seconds,
               "images_per_s": len(pool) / seconds if seconds else None}
    write_json(out / "summary.json", summary)
    print(f"wrote {len(pool)} images to {path} ({summary['images_per_s']:.2f} images/s)")
    return summary


