"""An analysis of earlier simulation runs: compare each run's MSD plateau with theory."""

import click

import gittrack


@gittrack.command()
@click.option(
    "--sims",
    type=gittrack.RunRef(multiple=True),
    required=True,
    help='Simulation runs: ids, a name, or a query such as "params.stiffness >= 1".',
)
def main(sims):
    """Return the relative error of the plateau for each simulation."""
    worst = 0.0
    for run in sims:
        theory = 2 * run.params["diffusion"] / run.params["stiffness"]
        msd = run.load("msd")  # loading an output records the lineage edge
        plateau = float(msd[len(msd) // 2 :].mean())
        error = abs(plateau - theory) / theory
        worst = max(worst, error)
        print(
            f"{run.short} k={run.params['stiffness']}: plateau {plateau:.3f}, theory {theory:.3f}"
        )
    return {"worst_relative_error": worst, "n_sims": len(sims)}


if __name__ == "__main__":
    main()
