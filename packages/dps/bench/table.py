"""Markdown table of a bench/compare.sh output folder: test AUC / AP mean ± std per graph and arm."""
import json
import sys
from pathlib import Path

ARMS = [("dps", "DPS"), ("dps-official", "DPS official t*"), ("tgat-uniform", "TGAT-uniform"),
        ("tgat-recent", "TGAT-recent")]


def main(out, graphs):
    rows = ["| graph | " + " | ".join(f"{n} AUC | {n} AP" for _, n in ARMS) + " |",
            "|---|" + "---|---|" * len(ARMS)]
    res = {}
    for g in graphs:
        cells = []
        for arm, _ in ARMS:
            p = Path(out) / g / arm / "summary.json"
            if not p.is_file():
                cells += ["n/a", "n/a"]
                continue
            s = json.loads(p.read_text())
            res[f"{g}/{arm}"] = {k: s.get(k) for k in ("test_auc_mean", "test_auc_std", "test_ap_mean",
                                                       "test_ap_std", "train_events_per_s_mean")}
            cells += [f"{s['test_auc_mean']:.4f} ± {s['test_auc_std']:.4f}",
                      f"{s['test_ap_mean']:.4f} ± {s['test_ap_std']:.4f}"]
        rows.append(f"| {g} | " + " | ".join(cells) + " |")
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "table.json").write_text(json.dumps(res, indent=2))
    print("\n".join(rows))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:] or ["ia_hypertext", "ia_contact", "fb_forum", "bitcoinotc"])
