"""tenfold.clitest on a torch-free stand-in CLI (a signals.steps loop with plain progress lines and a file as its
checkpoint): the signal lands inside the loop, the run saves at a step boundary, and the file comparisons drop
exactly the timing fields."""
from __future__ import annotations

import json
import signal
import sys
import textwrap

from tenfold import clitest

CLI = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from tenfold import signals
    from tenfold.cli import main_guard
    from tenfold.meters import progress

    @main_guard
    def main(out):
        out = Path(out); out.mkdir(exist_ok=True)
        ck = out / "ck.json"
        start = json.loads(ck.read_text())["step"] if ck.is_file() else 0
        bar = progress(total=400, initial=start, desc="toy")

        def save(t):
            ck.write_text(json.dumps({"step": t + 1}))
            return ck
        for t in signals.steps(range(start, 400), save, lambda t: f"step {t + 1}/400"):
            time.sleep(0.002)
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"step": t + 1, "time": time.time()}) + "\\n")
            bar.update(1)
        (out / "summary.json").write_text(json.dumps({"steps": 400, "elapsed_s": time.time()}))
    main(sys.argv[1])
""")


def test_interrupt_stops_inside_the_loop_and_resume_finishes(tmp_path):
    script = tmp_path / "toy.py"
    script.write_text(CLI)
    out = tmp_path / "run"
    rc, err = clitest.interrupt([sys.executable, script, out], at_step=20)
    assert rc == 128 + signal.SIGTERM, err
    last = err.strip().splitlines()[-1]
    saved = json.loads((out / "ck.json").read_text())["step"]
    assert last == f"stopped by SIGTERM: saved step {saved}/400 to {out / 'ck.json'}; continue with the same " \
                   f"command plus --resume"
    assert 20 <= saved < 400
    clitest.run([sys.executable, script, out])
    assert clitest.records(out) == [{"step": s} for s in range(1, 401)]
    assert clitest.summary(out) == {"steps": 400}
    assert clitest.summary(out, drop=["steps"]) == {}
