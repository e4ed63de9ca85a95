"""Small-scale ablation of the paper's two additions: plain GRPO, +UADO, +PAO, +both, over several seeds, on a
task the tiny model learns within the budget (the learnability ladder's rungs; exposure by default).

    python benchmarks/ablation.py [--rung exposure] [--seeds 0 1 2 3 4] [--settings recipe strong]
        [--out-of-range clip|zero] [--workers 1] [--threads 2] [--out runs/ablation] [--dry-run]

Every arm gets the same budget (GRPO steps, rollouts, data, warm start per seed) with the tiny CPU learning
recipe (``configs/train/tiny_learn.yaml``), and is scored on held-out photos in the deterministic expected
mode (split by photo; see benchmarks/learnability.py, whose runner this reuses). Settings:

- ``recipe``: the paper's values, UADO alpha 0.2 (weights within [0.82, 1]), PAO gamma 1e-4, eta1 1e-3;
- ``strong`` (labelled as such): alpha 2.0 (weights within [0.14, 1]) and gamma 1e-2, to see whether the
  mechanisms move anything when they are given weight.

Besides each arm's mean SRCC over seeds with a 95% t-interval, the table gives each arm's paired difference
from plain GRPO (same seed, same warm start, same data), with a 95% t-interval over seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import learnability as ladder  # noqa: E402

ARMS = {"GRPO": (False, False), "+UADO": (True, False), "+PAO": (False, True), "+UADO+PAO": (True, True)}
SETTINGS = {"recipe": (0.2, 1e-4), "strong": (2.0, 1e-2)}


def overrides(setting: str, arm: str) -> dict:
    uado, pao = ARMS[arm]
    alpha, gamma = SETTINGS[setting]
    return {"use_uado": uado, "use_pao": pao, "uado_alpha": alpha, "pao_gamma": gamma,
            "pao_eta1": 1e-3 if pao else 0.0}  # fmt: skip


def run_for(rung: str, seed: int, setting: str, arm: str, out_of_range: str | None = None):
    """The ladder's own grpo and qhawkeye runs serve as plain GRPO and as +UADO+PAO at the recipe's values.
    With ``out_of_range`` set, every arm (plain GRPO included) overrides the recipe's
    ``accuracy_out_of_range`` and is a run of its own, tagged with the policy."""
    if out_of_range is not None:
        values = {**overrides(setting, arm), "accuracy_out_of_range": out_of_range}
        if arm == "GRPO":
            values = {
                "use_uado": False,
                "use_pao": False,
                "pao_eta1": 0.0,
                "accuracy_out_of_range": out_of_range,
            }
        tag = f"{out_of_range}-GRPO" if arm == "GRPO" else f"{out_of_range}-{setting}{arm}"
        return ladder.Run(rung, "grpo", seed, tag, tuple(sorted(values.items())))
    if arm == "GRPO":
        return ladder.Run(rung, "grpo", seed)
    if arm == "+UADO+PAO" and setting == "recipe":
        return ladder.Run(rung, "qhawkeye", seed)
    return ladder.Run(rung, "grpo", seed, f"{setting}{arm}", tuple(sorted(overrides(setting, arm).items())))


def runs(rung: str, seeds: list[int], settings: list[str], out_of_range: str | None = None) -> list:
    out = []
    for seed in seeds:
        out.append(ladder.Run(rung, "warm", seed))
        out += list(
            dict.fromkeys(
                run_for(rung, seed, setting, arm, out_of_range) for setting in settings for arm in ARMS
            )
        )
    return out


def table(
    results: list[dict], rung: str, seeds: list[int], settings: list[str], out_of_range: str | None = None
) -> str:
    srcc = {(r["arm"], r["tag"], r["seed"]): r["eval"]["expected"]["srcc"] for r in results}
    greedy = {(r["arm"], r["tag"], r["seed"]): r["eval"]["greedy"] for r in results}
    done = {(r["arm"], r["tag"], r["seed"]) for r in results}
    lines = ["| setting | arm | seeds | SRCC (expected) [95% CI] | difference from GRPO, paired [95% CI] | "
             "SRCC (greedy) | greedy answers outside [1, 5] |", "|---|---|---:|---|---|---|---:|"]  # fmt: skip
    for setting in settings:
        for arm in ARMS:
            values, diffs, n, g = [], [], 0, []
            for seed in seeds:
                run = run_for(rung, seed, setting, arm, out_of_range)
                base = run_for(rung, seed, setting, "GRPO", out_of_range)
                n += (run.arm, run.tag, seed) in done
                g += [greedy[(run.arm, run.tag, seed)]] if (run.arm, run.tag, seed) in done else []
                value, ref = srcc.get((run.arm, run.tag, seed)), srcc.get((base.arm, base.tag, seed))
                values.append(value)
                if value is not None and ref is not None:
                    diffs.append(value - ref)
            diff = "" if arm == "GRPO" else _cell(diffs)
            outside = sum(x.get("out_of_range", 0) for x in g) / max(len(g), 1)
            lines.append(f"| {setting} | {arm} | {n} | {_cell(values)} | {diff} | {_cell([x['srcc'] for x in g])} | "
                         f"{outside:.0%} |")  # fmt: skip
    return "\n".join(lines)


def _cell(values: list) -> str:
    mean, lo, hi = ladder.t_interval(values)
    if math.isnan(mean):
        return "n/a"
    return f"{mean:+.3f}" + ("" if math.isnan(lo) else f" [{lo:+.3f}, {hi:+.3f}]")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rung", default="exposure", choices=[r for r in ladder.RUNGS if r != "livewild"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument(
        "--out-of-range",
        choices=["clip", "zero"],
        default=None,
        help="override the recipe's accuracy_out_of_range in every arm (runs tagged with the policy)",
    )
    parser.add_argument("--grpo-steps", type=int, default=ladder.Budget.grpo_steps)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/learnability", help="shared with the ladder: runs are reused")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    budget = ladder.DRY if args.dry_run else ladder.Budget(grpo_steps=args.grpo_steps)
    out = Path(args.out)
    results = ladder.execute(
        runs(args.rung, args.seeds, args.settings, args.out_of_range), out, budget, args.workers, args.threads
    )
    text = table(results, args.rung, args.seeds, args.settings, args.out_of_range)
    name = f"ablation_{args.rung}" + (f"_{args.out_of_range}" if args.out_of_range else "")
    (out / f"{name}.md").write_text(text + "\n")
    (out / f"{name}.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"\n{budget.grpo_steps} GRPO steps per run, rung {args.rung}, seeds {args.seeds}\n\n{text}")


if __name__ == "__main__":
    main()
